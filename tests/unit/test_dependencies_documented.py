"""Every pinned dependency (requirements/*.txt, package.json) is explained in
docs/dependencies.md, so a new one cannot land without saying why it earns its place."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pinned() -> set[str]:
    names = set()
    for requirements in (ROOT / "requirements").glob("*.txt"):
        for line in requirements.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                names.add(re.split(r"[\[=<>!~ ]", line, maxsplit=1)[0])
    package = json.loads((ROOT / "package.json").read_text())
    names |= set(package.get("dependencies", {})) | set(package.get("devDependencies", {}))
    return names


def test_every_dependency_is_documented():
    documented = set(
        re.findall(r"^\| `([^`]+)`", (ROOT / "docs/dependencies.md").read_text(), re.M)
    )
    documented |= set(re.findall(r"`, `([^`]+)`", (ROOT / "docs/dependencies.md").read_text()))
    names = {re.sub(r"\[.*\]", "", name) for name in documented}
    missing = sorted(p for p in pinned() if p not in names)
    assert len(pinned()) > 20
    assert not missing, f"not in docs/dependencies.md: {missing}"
