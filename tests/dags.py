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
