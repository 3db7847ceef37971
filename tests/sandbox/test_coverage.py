"""A measured test run sees the sandbox's child too: when the worker runs under coverage
(COVERAGE_PROCESS_START), the child measures its own code, saves into its run's directory
(the one place it may write) and the supervisor takes the file out beside the others, taking
only a regular file, never through a link the handler planted; unmeasured, nothing is sent."""

from __future__ import annotations

from pathlib import Path

import coverage
import pytest

from tests.sandbox.helpers import run
from trace_tasks import sandbox
from trace_web.lite.stack import REPO_ROOT

CHILD = str((Path(sandbox.__file__).parent / "_child.py").resolve())


@pytest.fixture
def measured(monkeypatch, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("COVERAGE_PROCESS_START", str(REPO_ROOT / "pyproject.toml"))
    monkeypatch.setenv("COVERAGE_FILE", str(data / ".coverage"))
    return data


def test_the_childs_lines_reach_the_runs_data_files(measured, tmp_path):
    """Its module-level lines too: the child starts measuring before its own definitions."""
    (tmp_path / "run").mkdir()
    result = run(tmp_path / "run", "def handle(ctx):\n    return [{'n': 1}]\n")
    assert result.rows == [{"n": 1}]
    (collected,) = measured.glob(".coverage.sandbox.*")
    data = coverage.CoverageData(basename=str(collected))
    data.read()
    lines = data.lines(CHILD)
    assert lines, data.measured_files()
    main_line = next(
        n for n, text in enumerate(Path(CHILD).read_text().splitlines(), 1) if "def _main" in text
    )
    assert any(n > main_line for n in lines)  # the handler's run itself, after confinement
    source = Path(CHILD).read_text().splitlines()
    definition = next(n for n, text in enumerate(source, 1) if text.startswith("def _send("))
    assert definition in lines


def test_a_link_in_place_of_the_data_file_is_not_followed(measured, tmp_path):
    planted = """
import os
def handle(ctx):
    os.remove('.coverage.sandbox') if os.path.lexists('.coverage.sandbox') else None
    os.symlink('/etc/hostname', '.coverage.sandbox')
    os._exit(0)  # before the child's own save could replace the link
"""
    (tmp_path / "run").mkdir()
    with pytest.raises(sandbox.HandlerFailed):
        run(tmp_path / "run", planted)
    assert list(measured.glob(".coverage.sandbox.*")) == []


def test_unmeasured_the_child_is_sent_no_coverage(monkeypatch):
    monkeypatch.delenv("COVERAGE_PROCESS_START", raising=False)
    assert sandbox._coverage_env("/tmp/x") == {}
    monkeypatch.setenv("COVERAGE_PROCESS_START", str(REPO_ROOT / "pyproject.toml"))
    path, data_file, source = sandbox._coverage_env("/tmp/x")["TRACE_SANDBOX_COVERAGE"].split(":")
    assert Path(path, "coverage", "__init__.py").exists()
    assert data_file == "/tmp/x/.coverage.sandbox"
    assert source == str(Path(sandbox.__file__).parent)


def test_a_torn_data_file_is_not_taken(measured, tmp_path):
    torn = tmp_path / "run-dir"
    torn.mkdir()
    (torn / ".coverage.sandbox").write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    sandbox._coverage_collect(str(torn))
    assert list(measured.glob(".coverage.sandbox.*")) == []
