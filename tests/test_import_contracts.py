"""The import graph keeps its shape: no cycles, a pure judge, checks and common on
their own. The contracts live in pyproject.toml (`[tool.importlinter]`).

import-linter runs in its own process, as CI runs it: its CLI calls
`logging.config.dictConfig` (disable_existing_loggers defaults to True), which in-process
would silence every logger already created, `postflight` included, for later tests.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(
    config: Path, cwd: Path, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on `config`, in a child process so this process's logging is left alone."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [os.fspath(pythonpath), env.get("PYTHONPATH")])
        )
    return subprocess.run(
        [os.fspath(LINT_IMPORTS), "--config", os.fspath(config), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_graph_keeps_every_contract() -> None:
    result = lint_imports(ROOT / "pyproject.toml", ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_new_cycle_breaks_the_contract(tmp_path: Path) -> None:
    """The same contract type on a package with a cycle: the check can fail."""
    package = tmp_path / "circular_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text("from circular_pkg import providers\n")
    (package / "providers.py").write_text("def f():\n    from circular_pkg import settings\n")
    config = tmp_path / "contracts.ini"
    config.write_text(
        "[importlinter]\nroot_package = circular_pkg\n\n"
        "[importlinter:contract:cycles]\nname = no cycles\ntype = acyclic_siblings\n"
        "ancestors = circular_pkg\n"
    )
    result = lint_imports(config, tmp_path, pythonpath=tmp_path)
    assert result.returncode == 1
    assert "BROKEN" in result.stdout


def test_checking_the_contracts_leaves_the_loggers_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Checking the contracts must not disable loggers that exist already (it once did,
    and tests/test_app_lifecycle.py, run after this file, saw an empty caplog)."""
    logger = logging.getLogger("postflight")
    lint_imports(ROOT / "pyproject.toml", ROOT)
    with caplog.at_level(logging.ERROR, logger="postflight"):
        logger.error("still heard")
    assert not logger.disabled
    assert "still heard" in caplog.text
