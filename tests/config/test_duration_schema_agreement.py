"""The published JSON Schema and validate-config say the same of every duration written:
an editor pointed at the schema flagged `30S` and `1h 30m`, which validate-config takes."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.cli import main
from tests.config.test_validate_config import MINIMAL

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = jsonschema.Draft202012Validator(
    json.loads((ROOT / "config" / "postflight.schema.json").read_text())
)


def with_rounds(written: str) -> str:
    """MINIMAL with `rollback.backoff` (a duration with no bound, 0 allowed: no wait)
    written as the quoted text `written` (JSON's quoting is YAML's double-quoted style)."""
    secret = "      secret: shh-secret\n"
    assert secret in MINIMAL
    return MINIMAL.replace(secret, f"{secret}      backoff: {json.dumps(written)}\n")


def validate_config(text: str) -> tuple[int, str]:
    """`postflight validate-config FILE` as a user runs it: its exit code and words."""
    out = io.StringIO()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "postflight.yaml"
        path.write_text(text)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(["validate-config", str(path)])
    return code, out.getvalue()


def schema_takes(text: str) -> bool:
    return SCHEMA.is_valid(yaml.safe_load(text))


_NUMBER = st.from_regex(r"\A(?:[0-9]{1,3}(?:\.[0-9]{1,2})?|\.[0-9]{1,2})\Z")
_UNIT = st.sampled_from(["d", "h", "m", "s", "ms", "D", "H", "M", "S", "MS", "Ms", "mS"])
_SPACE = st.sampled_from(["", "", " ", "  ", "\t"])
_PART = st.tuples(_NUMBER, _SPACE, _UNIT, _SPACE).map("".join)
WRITTEN = st.one_of(
    st.lists(_PART, min_size=1, max_size=4).map("".join),
    st.tuples(_SPACE, st.lists(_PART, min_size=1, max_size=3).map("".join), _SPACE).map("".join),
    _NUMBER,
    st.text(alphabet="0123456789.:smhdSMHD -+e_\t\n\u00a0\u0661", max_size=8),
)


@settings(derandomize=True, max_examples=300, deadline=None, database=None)
@given(WRITTEN)
@example("30S")
@example("1h 30m")
@example("1m 30s")
@example("45")
@example("1e3")
@example("-0s")
@example("\u0661s")  # an Arabic-Indic one: a digit to Python's \d, not to ECMA's
@example("1 0s")
@example("30s\n")
def test_the_schema_takes_every_duration_validate_config_takes_and_no_other(
    written: str,
) -> None:
    text = with_rounds(written)
    code, out = validate_config(text)
    assert code in (0, 2), out
    assert schema_takes(text) == (code == 0), (written, out)


@pytest.mark.parametrize("written", ["30S", "1h 30m", "1H30M", "500 ms", " 1d 2h "])
def test_a_duration_with_capitals_or_spaces_is_valid_to_both(written: str) -> None:
    """The two forms an editor flagged, and their kin."""
    code, out = validate_config(with_rounds(written))
    assert code == 0, out
    assert schema_takes(with_rounds(written)), written


def with_number(path: tuple[str, ...], seconds: float) -> str:
    """MINIMAL with the duration at `path` written as the bare number `seconds`."""
    document = yaml.safe_load(MINIMAL)
    node = document
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = seconds
    return yaml.safe_dump(document)


@pytest.mark.parametrize(
    ("path", "seconds"),
    [
        (("server", "shutdown_timeout"), 0),  # more than 0s
        (("server", "shutdown_timeout"), 0.001),
        (("server", "shutdown_timeout"), 10),  # at most 10s
        (("server", "shutdown_timeout"), 10.5),
        (("store", "retention", "rounds"), 0),  # more than 0s
        (("store", "retention", "rounds"), 1),
        (("store", "lease"), 0.999),  # at least 1s
        (("store", "lease"), 1),
        (("alerting", "timeout"), 0.5),  # 1s to 1m
        (("alerting", "timeout"), 1),
        (("alerting", "timeout"), 60),
        (("alerting", "timeout"), 61),
        (("environments", "production", "window"), 7 * 86400),  # at most 7d
        (("environments", "production", "window"), 7 * 86400 + 1),
    ],
)
def test_a_duration_written_as_seconds_is_bounded_alike_by_both(
    path: tuple[str, ...], seconds: float
) -> None:
    """A number's bounds are exact in a schema (`exclusiveMinimum`, `minimum`, `maximum`):
    an editor flags `shutdown_timeout: 0` or `lease: 0.5` as validate-config does. (Text
    keeps only its pattern: its bounds are in the field's description.)"""
    text = with_number(path, seconds)
    code, out = validate_config(text)
    assert code in (0, 2), out
    assert schema_takes(text) == (code == 0), (path, seconds, out)
