"""The query engine's errors: one family, each with a stable code the API and CLI can show.

`QueryRefused` is the gate saying no before anything runs; `QueryFailed` is the engine failing
while it ran (DuckDB's exceptions are turned into it at the lowest layer, redacted of paths and
connection strings); `QueryTimedOut` is the time limit; `SandboxSetupFailed` is Trace's own
fault (the sandbox could not be built), never the user's. No Django here: operators use these.
"""

from __future__ import annotations


class QueryError(Exception):
    """Base of the family. `code` is stable (API error codes, tests); `reason` is for people."""

    code: str = "query_error"

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.reason!r})"


class QueryRefused(QueryError):
    """The SQL gate refused the query; nothing ran. The user can act on `reason`."""


class QueryFailed(QueryError):
    """The engine raised while the query ran (bad column, division by zero, out of memory...).

    `user_error` says whether the query itself is at fault (a 400) or the platform is (a 500).
    """

    def __init__(self, code: str, reason: str, *, user_error: bool = True) -> None:
        super().__init__(code, reason)
        self.user_error = user_error


class QueryTimedOut(QueryFailed):
    """The time limit interrupted the query."""

    def __init__(self, seconds: float) -> None:
        super().__init__("timeout", f"the query ran longer than its limit of {seconds:g} s")
        self.seconds = seconds


class SandboxSetupFailed(QueryError):
    """Building the hardened connection failed: a platform fault, retryable, never run anyway."""

    def __init__(self, reason: str) -> None:
        super().__init__("sandbox_setup_failed", reason)
