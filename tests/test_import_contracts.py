"""The import graph keeps its shape: no cycles, a pure judge, checks and common on
their own. The contracts live in pyproject.toml (`[tool.importlinter]`).

import-linter runs in its own process, as CI runs it: its CLI calls
`logging.config.dictConfig` (disable_existing_loggers defaults to True), which in-process
would silence every logger already created, `postflight` included, for later tests.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import typing
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


def test_the_import_graph_keeps_every_contract(caplog: pytest.LogCaptureFixture) -> None:
    """Checking the contracts must not disable loggers that exist already either (it once
    did, and tests/test_app_lifecycle.py, run after this file, saw an empty caplog)."""
    logger = logging.getLogger("postflight")
    result = lint_imports(ROOT / "pyproject.toml", ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    with caplog.at_level(logging.ERROR, logger="postflight"):
        logger.error("still heard")
    assert not logger.disabled
    assert "still heard" in caplog.text


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


def layout_rows() -> list[tuple[str, list[str]]]:
    """The README's Layout table: (room, the backticked names of its row)."""
    text = (ROOT / "README.md").read_text()
    table = text.split("\n## Layout\n", 1)[1].split("\n### ", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = line.split(" | ")
        if line.startswith("| `") and len(cells) == 2:
            rows.append((cells[0], re.findall(r"`([^`]+)`", line)))
    return rows


def test_every_file_and_folder_the_readme_layout_names_exists() -> None:
    """A module renamed or moved left the map pointing nowhere. A name is from the root
    or, bare, in the row's room (`main.py` of `agent/cli/`)."""
    rows = layout_rows()
    assert len(rows) >= 15, rows
    missing = []
    for room, names in rows:
        home = ROOT / re.findall(r"`([^`]+)`", room)[0]
        home = home if home.is_dir() else home.parent
        for name in names:
            path = name.split(":", 1)[0]
            if not re.fullmatch(r"[\w./]+(\.py|\.yml|\.toml|/)", path):
                continue  # a command, a flag, a phrase
            if not ((ROOT / path).exists() or (home / path).exists()):
                missing.append(f"{name} (in {room})")
    assert not missing, missing


def test_the_names_where_to_add_points_at_are_there() -> None:
    """The README's "Where to add…": each name it tells a contributor to follow."""
    from agent.analysis.policies import register
    from agent.analysis.policies.base import RulePolicy
    from agent.config_models import FieldError
    from agent.providers import provider_settings
    from alerting.events import EVENTS, AlertEvent, EventSpec
    from checks.base import Check, CheckContext

    for name in ("type", "Config"):
        assert name in Check.__annotations__, name
    for name in ("run", "background", "once_per_round", "fits_deadline"):
        assert hasattr(Check, name), name
    assert "deadline" in CheckContext.__dataclass_fields__
    assert issubclass(FieldError, ValueError)
    assert set(EVENTS) == set(typing.get_args(AlertEvent))
    assert all(isinstance(spec, EventSpec) for spec in EVENTS.values())
    assert {"step", "judge"} <= set(dir(RulePolicy)) and callable(register)
    assert hasattr(provider_settings.ProviderSettings, "check_rule")
    groups = (ROOT / "pyproject.toml").read_text()
    for group in ("postflight.checks", "postflight.providers"):
        assert f'[project.entry-points."{group}"]' in groups, group


def test_the_flow_the_layout_draws_is_the_layers_contract() -> None:
    """The README's Layout: "The flow runs one way: `cli` → `app` → `web`/`windows` → …".
    Drawn and never checked, it said `providers` sit above `settings`, where `settings`
    imports the providers' settings models: now the drawing is a `layers` contract (run by
    the test above), its exceptions the ones the README names."""
    import tomllib

    text = " ".join((ROOT / "README.md").read_text().split())
    drawn = text.split("The flow runs one way: ", 1)[1].split(". ", 1)[0]
    layers = [
        {
            f"{'' if n in ('alerting', 'common') else 'agent.'}{n}"
            for n in re.findall(r"`(\w+)`", step)
        }
        for step in drawn.split(" (", 1)[0].split(" → ")
    ]
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [flow] = [c for c in contracts["contracts"] if c["type"] == "layers"]
    assert layers == [set(layer.split(" : ")) for layer in flow["layers"]], drawn
    for rule in flow["ignore_imports"]:
        module = rule.split(" -> ")[1]
        assert f"`{module.rsplit('.', 1)[1]}.py`" in drawn, (rule, drawn)
