"""POSTFLIGHT_REQUIRE_ALL=1 turns every way a test can avoid running into a failure.

Each case runs a small test file in a fresh pytest session (pytester) with and
without the variable, through the same plugin CI uses (`tests.require_all`).
"""

from __future__ import annotations

import pytest

PLUGIN = [
    *("-p", "tests.require_all", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"),
    # as pyproject's addopts (which a pytester session does not read): else each session
    # imports them afresh (pytester restores sys.modules after it), ~1.5 s of CPU each
    *("-p", "no:schemathesis", "-p", "no:anyio"),
    *("-o", "asyncio_default_fixture_loop_scope=function"),  # pyproject's, as above
]

CASES = {
    "skip_marker": """
        import pytest

        @pytest.mark.skip(reason="no binary")
        def test_it():
            pass
    """,
    "skip_inside": """
        import pytest

        def test_it():
            pytest.skip("no binary")
    """,
    "module_importorskip": """
        import pytest

        pytest.importorskip("a_module_that_is_not_installed_anywhere")

        def test_it():
            pass
    """,
    "module_skip": """
        import pytest

        pytest.skip("not here", allow_module_level=True)

        def test_it():
            pass
    """,
    "xfail_fails": """
        import pytest

        @pytest.mark.xfail(reason="known bug")
        def test_it():
            assert False
    """,
    "xfail_passes": """
        import pytest

        @pytest.mark.xfail(reason="known bug", strict=False)
        def test_it():
            pass
    """,
    "xfail_imperative": """
        import pytest

        def test_it():
            pytest.xfail("not today")
    """,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_without_the_variable_nothing_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.delenv("POSTFLIGHT_REQUIRE_ALL", raising=False)
    pytester.makepyfile(**{f"test_{case}": CASES[case]})
    result = pytester.runpytest(*PLUGIN)
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes and "errors" not in outcomes, result.stdout.str()
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)


@pytest.mark.parametrize("case", sorted(CASES))
def test_with_the_variable_every_test_that_did_not_run_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.setenv("POSTFLIGHT_REQUIRE_ALL", "1")
    pytester.makepyfile(**{f"test_{case}": CASES[case]})
    result = pytester.runpytest(*PLUGIN)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == 1, result.stdout.str()
    assert not {"skipped", "xfailed", "xpassed"} & set(outcomes), result.stdout.str()
    # a collection error stops the session (INTERRUPTED); either way the run is red
    assert result.ret in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED)
    assert "POSTFLIGHT_REQUIRE_ALL=1" in result.stdout.str()


def test_with_the_variable_a_passing_test_still_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTFLIGHT_REQUIRE_ALL", "1")
    pytester.makepyfile(test_ok="def test_it():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1)
