"""No file of the repository refers to a path outside it (a sibling checkout, a home or work
directory of the machine it was written on): a fresh clone must be complete by itself."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Not the repository's files: git's own, installs, caches and local state (see .gitignore).
SKIPPED = {
    ".git",
    ".venv",
    "node_modules",
    ".trace",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "build",
    "dist",
}
OUTSIDE = re.compile(r"\.\./shared\b|(?<![\w.])/(?:work|home|Users|root)/")


def repository_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [
            d for d in dirs if d not in SKIPPED and not d.endswith((".egg-info", "__pycache__"))
        ]
        for name in files:
            path = Path(folder) / name
            if name not in SKIPPED and path != Path(__file__):  # .git is a file in a worktree
                yield path.relative_to(ROOT), path


def test_no_file_refers_to_a_path_outside_the_repository():
    found = []
    for relative, path in repository_files():
        text = path.read_bytes().decode("utf-8", errors="ignore")
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{relative}:{number}: {line.strip()[:120]}")
    assert not found, "\n".join(found)
