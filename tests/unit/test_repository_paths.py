"""No file of the repository refers to a path outside it (a sibling checkout, a home or work
directory of the machine it was written on): a fresh clone must be complete by itself."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(r"\.\./shared\b|(?<![\w.])/(?:work|home|Users|root)/")


def repository_files():
    """Tracked files and new ones not yet added, never what .gitignore leaves out (installs,
    caches, local state, coverage data the running suite writes meanwhile)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if path.is_file() and path != Path(__file__):
            yield Path(name), path


def test_no_file_refers_to_a_path_outside_the_repository():
    found = []
    for relative, path in repository_files():
        text = path.read_bytes().decode("utf-8", errors="ignore")
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{relative}:{number}: {line.strip()[:120]}")
    assert not found, "\n".join(found)
