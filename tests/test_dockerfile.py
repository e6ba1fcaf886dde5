"""The image's build stage builds: it is given every file the wheel needs.

Docker is not run here. The test copies exactly what the Dockerfile's build stage COPYs,
and only that, into an empty directory, and builds the wheel there as `pip wheel` in the
image does (offline: no build isolation, no dependencies). A package left out of the
COPY lines (`common/`, which holds the version) fails the build, as it would in Docker.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build_stage_copies(dockerfile: str) -> list[str]:
    """The sources of the first stage's `COPY` lines (before the second `FROM`)."""
    sources: list[str] = []
    stages = 0
    for line in dockerfile.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "FROM":
            stages += 1
            if stages > 1:
                break
        elif words[0] == "COPY" and not any(w.startswith("--from") for w in words):
            sources += words[1:-1]
    return sources


@pytest.mark.timeout(120)
def test_the_build_stage_copies_everything_the_wheel_needs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    copied = build_stage_copies((ROOT / "Dockerfile").read_text())
    assert "pyproject.toml" in copied
    for name in copied:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, src / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheels"), str(src)],
        capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [wheel] = (tmp_path / "wheels").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("agent", "checks", "alerting", "common"):
        assert f"{package}/__init__.py" in names, package
    assert any(n.startswith("agent/web/templates/") and n.endswith(".html") for n in names)
