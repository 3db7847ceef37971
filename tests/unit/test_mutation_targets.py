"""The mutation runner's table stays true to the tree: every target names a module and tests
that exist, the CI subset is made of targets, and every mutant explained as equivalent belongs
to a target's module (tests/mutation/run.py)."""

from __future__ import annotations

from tests.mutation.run import (
    CI_TARGETS,
    EQUIVALENT,
    REPO_ROOT,
    TARGETS,
    parse_results,
    unexplained_of,
)


def test_every_target_names_a_module_and_tests_that_exist():
    for name, target in TARGETS.items():
        assert (REPO_ROOT / target.module).is_file(), name
        for selection in target.tests:
            assert (REPO_ROOT / selection.split("::")[0]).is_file(), (name, selection)
    assert set(CI_TARGETS) <= set(TARGETS)


def test_every_equivalent_mutant_belongs_to_a_target_module():
    modules = {t.module.removesuffix(".py").replace("/", ".") for t in TARGETS.values()}
    for mutant in EQUIVALENT:
        assert mutant.rsplit(".", 1)[0] in modules, mutant


def test_results_are_read_from_mutmuts_listing():
    listing = "    pkg.mod.x_f__mutmut_1: killed\n    pkg.mod.x_f__mutmut_2: no tests\nnoise\n"
    assert parse_results(listing) == {
        "pkg.mod.x_f__mutmut_1": "killed",
        "pkg.mod.x_f__mutmut_2": "no tests",
    }


def test_a_timeout_counts_as_killed_and_only_survivors_without_a_verdict_are_unexplained():
    equivalent = next(iter(EQUIVALENT))
    statuses = {
        "m.x_a__mutmut_1": "killed",
        "m.x_a__mutmut_2": "timeout",
        "m.x_a__mutmut_3": "survived",
        "m.x_a__mutmut_4": "no tests",
        equivalent: "survived",
    }
    assert unexplained_of(statuses) == {
        "m.x_a__mutmut_3": "survived",
        "m.x_a__mutmut_4": "no tests",
    }
