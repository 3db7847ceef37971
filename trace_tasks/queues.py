"""The one enum of queues: one Celery queue and one worker pool per runtime."""

from enum import StrEnum


class Queue(StrEnum):
    PLATFORM = "platform"  # trusted operators
    UDF = "udf"  # untrusted user code, sandboxed
    DELIVERY = "delivery"  # outbound sends; the only pool allowed to reach the internet
    DISPATCHER = "dispatcher"  # control-plane loops and routing
