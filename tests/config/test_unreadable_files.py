"""Files `validate-config` cannot read as YAML text: one error each, that says where
and what to do, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.main import main
from agent.settings_file import ConfigError, load_settings
from tests.config.test_validate_config import MINIMAL


def only_problem(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert len(info.value.problems) == 1, info.value.render()
    return str(info.value.problems[0])


def test_a_file_that_is_not_utf8_names_the_line_and_column_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("shh-secret", "caf\xe9").encode("latin-1"))
    problem = only_problem(path)
    lines = MINIMAL.splitlines()
    line = lines.index("      secret: shh-secret") + 1
    column = lines[line - 1].index("shh-secret") + len("caf") + 1
    assert f"(line {line}, column {column})" in problem, problem
    assert "not UTF-8" in problem and "save the file as UTF-8" in problem, problem
    assert "position" not in problem and "codec" not in problem, problem


def test_an_unreadable_file_says_so_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "postflight.yaml"
    path.write_text(MINIMAL)

    def refused(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refused)
    monkeypatch.setattr(Path, "read_bytes", refused)
    assert main(["validate-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {path}: permission denied" in err, err
    assert "Errno" not in err, err


@pytest.mark.parametrize(("character", "named"), [("\x00", "#x0000"), ("\x07", "#x0007")])
def test_a_control_character_is_one_line_with_its_line_and_column(
    tmp_path: Path, character: str, named: str
) -> None:
    """PyYAML's own words spanned two lines and said a `position` in the text."""
    path = tmp_path / "postflight.yaml"
    path.write_text(MINIMAL.replace("shh-secret", f"shh{character}secret"))
    problem = only_problem(path)
    lines = MINIMAL.splitlines()
    line = lines.index("      secret: shh-secret") + 1
    column = lines[line - 1].index("shh-secret") + len("shh") + 1
    assert problem == (
        f"(top level) (line {line}, column {column}): invalid YAML: a control character"
        f" ({named}) YAML does not allow; remove it"
    )


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "---\n"])
def test_an_empty_file_says_it_is_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    """It said "the file has no top-level `server:`", as of a file that had other sections."""
    path = tmp_path / "postflight.yaml"
    path.write_text(text)
    assert main(["validate-config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  server: required, but missing (the file is empty)",
        "  environments: required, but missing (the file is empty)",
    ]
