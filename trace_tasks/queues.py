"""The one enum of queues, one Celery queue and one worker pool each, and the rule that picks a
job's queue: its runtime's, except that long-running sources get the `stream` pool."""

from enum import StrEnum


class Queue(StrEnum):
    PLATFORM = "platform"  # trusted operators, batch work
    STREAM = "stream"  # trusted long-running sources (always_on), one pool slot per source
    UDF = "udf"  # untrusted user code, sandboxed
    DELIVERY = "delivery"  # outbound sends; the only pool allowed to reach the internet
    DISPATCHER = "dispatcher"  # control-plane loops and routing


def queue_for(*, runtime: str, source_kind: str) -> Queue:
    """The queue a job's wake-ups go to. An always_on source runs for ever: on the `platform`
    pool it would hold one of the few slots batch work needs, so trusted sources get `stream`,
    a pool sized for many long-lived tasks. Untrusted (`udf`) sources stay on `udf`, which
    isolates user code; the stream pool runs trusted code only."""
    if source_kind == "always_on" and runtime == Queue.PLATFORM:
        return Queue.STREAM
    return Queue(runtime)
