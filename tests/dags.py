"""DAG YAML documents shared by tests."""

NOOP_CHAIN = """
name: chain
defaults: {update_strategy: replace}
jobs:
  - name: extract
    activation: manual
    operator: noop
    outputs: 1
  - name: transform
    activation: reactive
    operator: noop
    inputs: [{from: {job: extract, output: 0}}]
"""


def noop_dag(name: str = "chain", *, extract_config: str = "{}", extra_jobs: str = "") -> str:
    return f"""
name: {name}
defaults: {{update_strategy: replace}}
jobs:
  - name: extract
    activation: manual
    operator: noop
    config: {extract_config}
  - name: transform
    activation: reactive
    operator: noop
    inputs: [{{from: {{job: extract, output: 0}}}}]
{extra_jobs}
"""


# A producer and a PerUpdate consumer: one consumer task per update of its input.
PER_UPDATE = """
name: stream
jobs:
  - name: produce
    activation: manual
    operator: noop
    update_strategy: replace
  - name: consume
    activation: reactive
    operator: noop
    outputs: 0
    execution_strategy: PerUpdate
    inputs: [{from: {job: produce, output: 0}}]
"""
