"""The import graph keeps its shape: no cycles, a pure judge, checks and common on
their own. The contracts live in pyproject.toml (`[tool.importlinter]`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_graph_keeps_every_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_a_new_cycle_breaks_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
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
    monkeypatch.syspath_prepend(os.fspath(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert lint_imports(config_filename=str(config), no_cache=True) == 1
    assert "BROKEN" in capsys.readouterr().out
