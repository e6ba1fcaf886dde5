"""POSTFLIGHT_REQUIRE_ALL=1 turns every way a test can avoid running into a failure.

Each case runs a small test file in a fresh pytest session (pytester) with and
without the variable, through the same plugin CI uses (`tests.require_all`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[1]


def test_ci_run_is_the_readmes_test_command_with_what_the_readme_says_it_adds() -> None:
    """The README's quick start: `.ci/run` runs its test command word for word, installs
    prometheus, chromium, postgresql, iproute2 and util-linux (the demo's network
    namespace), sets POSTFLIGHT_REQUIRE_ALL=1 and HYPOTHESIS_PROFILE=ci, and unsets
    PYTHONDONTWRITEBYTECODE."""
    readme = (ROOT / "README.md").read_text().split("\n## Running the daemon\n", 1)[0]
    [command] = [line for line in readme.splitlines() if line.endswith("-m pytest")]
    script = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in script.splitlines()]
    assert command in lines, command
    before = lines[: lines.index(command)]
    for setting in (
        "export POSTFLIGHT_REQUIRE_ALL=1",
        "export HYPOTHESIS_PROFILE=ci",
        "unset PYTHONDONTWRITEBYTECODE",
    ):
        assert setting in before, setting
    for package in ("prometheus", "chromium", "postgresql", "iproute2", "util-linux"):
        assert f"need+=({package})" in script, package


@pytest.mark.parametrize(
    ("variables", "derandomized"),
    [({"HYPOTHESIS_PROFILE": "ci"}, True), ({"CI": "true"}, True), ({}, False)],
    ids=["HYPOTHESIS_PROFILE=ci", "CI=true", "neither"],
)
def test_ci_or_its_profile_runs_hypothesis_derandomised(
    variables: dict[str, str], derandomized: bool
) -> None:
    """The README: `HYPOTHESIS_PROFILE=ci` runs hypothesis derandomised, and `CI=true`
    selects it too; the suite's settings as its conftest loads them, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}
    code = "import tests.conftest, hypothesis; print(hypothesis.settings.default.derandomize)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env | variables,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == str(derandomized), done.stdout + done.stderr
