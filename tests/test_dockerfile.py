"""The image's build stage builds: it is given every file the wheel needs.

Docker is not run here. The test copies exactly what the Dockerfile's build stage COPYs,
and only that, into an empty directory, and builds the wheel there as `pip wheel` in the
image does (offline: no build isolation, no dependencies). A package left out of the
COPY lines (`common/`, which holds the version) fails the build, as it would in Docker.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from agent.settings_file import load_settings_text
from tests.cli_process import stopped_as_the_block_ends
from tests.ports import free_port

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


def final_stage(dockerfile: str) -> dict[str, list[str]]:
    """The last stage's instructions (continuation lines joined), each keyword's lines."""
    joined = dockerfile.replace("\\\n", " ")
    stage = joined.rsplit("\nFROM ", 1)[1]
    found: dict[str, list[str]] = {"FROM": [stage.splitlines()[0]]}
    for line in stage.splitlines()[1:]:
        keyword, _, rest = line.strip().partition(" ")
        if keyword and not keyword.startswith("#"):
            found.setdefault(keyword, []).append(" ".join(rest.split()))
    return found


def image_env(stage: dict[str, list[str]]) -> dict[str, str]:
    """The image's `ENV NAME=value …` settings."""
    return dict(pair.split("=", 1) for line in stage["ENV"] for pair in line.split())


@pytest.mark.timeout(120)
def test_the_image_runs_as_the_readme_says_and_its_healthcheck_passes(
    tmp_path: Path,
) -> None:
    """Docker is not run here; what the image runs is. The README: slim base, non-root
    user, `ENTRYPOINT ["postflight", "run"]`, the config mounted at
    /etc/postflight/postflight.yaml, `HEALTHCHECK` on /healthz, and `server.public_url` or
    `POSTFLIGHT__SERVER__PUBLIC_URL` for the links. With the image's ENV (its paths moved
    under tmp_path) and the example configuration as the mount: the links warning of its
    every-interface listen is said, and gone once the variable is set; `postflight run`
    with no argument (on 127.0.0.1 here: tests bind nothing else) starts, its HEALTHCHECK
    command exits 0, and SIGTERM stops it with exit 0."""
    stage = final_stage((ROOT / "Dockerfile").read_text())
    assert stage["FROM"][0].startswith("python:3.11-slim"), stage["FROM"]
    assert stage["ENTRYPOINT"] == ['["postflight", "run"]']
    assert stage["USER"] == ["postflight"] and "useradd" in " ".join(stage["RUN"])
    env = image_env(stage)
    assert env["POSTFLIGHT_CONFIG"] == "/etc/postflight/postflight.yaml"
    assert env["POSTFLIGHT__SERVER__LISTEN"] == "0.0.0.0:8787"
    [check] = stage["HEALTHCHECK"]
    command = check.split(" CMD ", 1)[1]
    assert "/healthz" in command and command.startswith("python -c ")
    mount = tmp_path / "postflight.yaml"
    shutil.copy(ROOT / "config" / "postflight.example.yaml", mount)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFLIGHT")}
    run_env |= env | {
        "POSTFLIGHT_CONFIG": str(mount),
        "POSTFLIGHT_STORE": f"sqlite:///{tmp_path}/postflight.db",
        "POSTFLIGHT_API_TOKEN": "tok-1234567890abcdef",
        "PYTHONPATH": str(ROOT),
    }
    run_env |= dict.fromkeys(("ROLLBACK_SECRET", "SENTRY_AUTH_TOKEN", "NEW_RELIC_API_KEY"), "x")
    postflight = str(Path(sys.executable).parent / "postflight")
    warning = "links in alerts, pages and deployment statuses would read http://0.0.0.0:8787/"
    for public_url in (None, "https://postflight.example.net"):
        public = {} if public_url is None else {"POSTFLIGHT__SERVER__PUBLIC_URL": public_url}
        said = subprocess.run(
            [postflight, "validate-config", str(mount)],
            env=run_env | public,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert said.returncode == 0, said.stderr
        assert (warning in said.stderr) == (public_url is None), said.stderr
    port = str(free_port())
    run_env["POSTFLIGHT__SERVER__LISTEN"] = f"127.0.0.1:{port}"
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        agent = subprocess.Popen([postflight, "run"], env=run_env, stdout=out, stderr=out)
    with stopped_as_the_block_ends(agent, log):
        deadline = time.monotonic() + 60
        while "listening on" not in log.read_text() and time.monotonic() < deadline:
            assert agent.poll() is None, log.read_text()
            time.sleep(0.1)
        healthcheck = subprocess.run(
            ["bash", "-c", command.replace("8787", port)],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert healthcheck.returncode == 0, healthcheck.stderr + log.read_text()
    text = log.read_text()
    assert f"config {mount}; store SQLite file {tmp_path}/postflight.db" in text, text


OWN_CONFIG = """\
server:
  api_tokens: ["${POSTFLIGHT_API_TOKEN}"]
environments:
  production:
    base_url: http://127.0.0.1:9/
    checks: [{name: health, type: http, path: /healthz}]
    rules: [{name: errors, source: checks, metric: error_rate, max: 0.05}]
"""
"""A configuration of one's own, written from the README's walkthrough: it names neither
`server.listen` nor `store`, nor reads the example's `${POSTFLIGHT_LISTEN}`."""


def test_a_config_of_ones_own_listens_and_stores_where_the_image_says() -> None:
    """The README: mount the config at /etc/postflight/postflight.yaml. Read with the
    image's ENV, as `postflight run` reads it in the container, any such file listens on
    every interface at the port the image EXPOSEs and its HEALTHCHECK asks (a port mapped
    to 127.0.0.1 inside a container is reachable by nothing but the HEALTHCHECK, which
    then reports an unreachable agent healthy), and keeps its SQLite store in the image's
    VOLUME (in the container's own layer it was lost with the container, and with it
    every window and each rollback's record of having been sent). Before, only the
    example, which reads `${POSTFLIGHT_LISTEN}` and `${POSTFLIGHT_STORE}`, did either."""
    stage = final_stage((ROOT / "Dockerfile").read_text())
    env = image_env(stage) | {"POSTFLIGHT_API_TOKEN": "tok-1234567890abcdef"}
    settings = load_settings_text(OWN_CONFIG, source="/etc/postflight/postflight.yaml", env=env)
    [exposed] = stage["EXPOSE"]
    [check] = stage["HEALTHCHECK"]
    assert settings.server.listen == f"0.0.0.0:{exposed}", settings.server.listen
    assert f"127.0.0.1:{exposed}/healthz" in check
    [volume] = json.loads(stage["VOLUME"][0])
    workdir = stage["WORKDIR"][-1]
    path = settings.store.url.removeprefix("sqlite:///")
    assert path != settings.store.url, settings.store.url
    stored = posixpath.normpath(posixpath.join(workdir, path))
    assert stored.startswith(volume.rstrip("/") + "/"), (stored, volume)
