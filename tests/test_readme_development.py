"""The README's "Development": its command's tools are the venv's, `.ci/run` runs only the
tests, and the reason client edge cases are tested against misbehaving local servers
(aioresponses cannot mock the aiohttp shipped) still holds."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def development() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("\n## Development\n", 1)[1].split("\n## ", 1)[0]


def test_the_command_runs_the_venvs_linters_and_ci_run_none_of_them() -> None:
    block = re.search(r"```sh\n(.*?)```", development(), re.S)
    assert block is not None
    tools = [shlex.split(step)[0] for step in block.group(1).strip().split(" && ")]
    assert tools == [".venv/bin/" + t for t in ("ruff", "ruff", "mypy", "lint-imports", "python")]
    venv = Path(sys.executable).parent
    for tool in tools:
        assert (venv / Path(tool).name).exists(), tool
    script = (ROOT / ".ci" / "run").read_text()
    assert not [t for t in ("ruff", "mypy", "lint-imports") if re.search(rf"\b{t}\b", script)]
    assert "-m pytest" in script


async def test_aioresponses_cannot_mock_the_aiohttp_shipped() -> None:
    """The README: "aioresponses does not work with aiohttp 3.14 (…; pnuckowski/
    aioresponses#289)". Once it does, this fails: say so in the README, and client edge
    cases may use it again."""
    aioresponses = pytest.importorskip("aioresponses").aioresponses
    assert tuple(int(p) for p in aiohttp.__version__.split(".")[:2]) >= (3, 14)
    assert "aiohttp 3.14" in development() and "aioresponses#289" in development()
    with aioresponses() as mocked:
        mocked.get("http://example.invalid/x", status=503)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(TypeError, match="stream_writer"):
                await session.get("http://example.invalid/x")
