"""A test-only operator whose completion the control plane must refuse (output out of range)."""


def run(ctx):
    ctx.outputs = [{"output": 5}]
