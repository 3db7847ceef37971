"""The Lite stack's environment file: URLs and secrets `trace lite up` generated for this
checkout, loaded by `manage.py` and `trace` so operator commands reach the running stack.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path(__file__).resolve().parent.parent.parent / ".trace"


def trace_home() -> Path:
    return Path(os.environ.get("TRACE_HOME") or DEFAULT_HOME).resolve()


def env_file_path(home: Path | None = None) -> Path:
    return (home or trace_home()) / "lite.env"


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    lines = ["# Written by `trace lite up`; values set in the real environment win."]
    lines += [f"{key}={value}" for key, value in sorted(values.items())]
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def load_lite_env() -> None:
    """Fill unset variables from the Lite env file, if one exists. Real env always wins."""
    for key, value in read_env_file(env_file_path()).items():
        os.environ.setdefault(key, value)
