"""`listen: 127.0.0.1:0`: the kernel picks a free port as it binds, and the agent says the
one it took (its `listening on` line) and builds its links on it. A harness (the demo, a
test) that picked a port itself by binding 0, reading it and closing could lose it to
another process before the agent bound it; it was refused ("port 0 is not one of 1-65535")."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_run_start import TOKEN, agent_config, listening_until_stopped


def registered(base: str) -> dict[str, Any]:
    """A deploy registered with the agent at `base`, as its API answered it."""
    register = urllib.request.Request(
        f"{base}/v1/deploys",
        data=json.dumps({"environment": "production", "version": "v2"}).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(register, timeout=10) as answer:
        deploy: dict[str, Any] = json.load(answer)
    return deploy


@pytest.mark.timeout(120)
def test_a_daemon_on_port_0_answers_on_the_port_its_log_names(tmp_path: Path) -> None:
    config = agent_config(tmp_path, 0)
    log = tmp_path / "agent.log"
    with listening_until_stopped(str(config), log):
        said = log.read_text()
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+) ", said)
        assert found, said
        port = int(found[1])
        assert port != 0, said
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as answer:
            assert answer.status == 200
        # the links are built on the port taken, not on `:0`
        deploy = registered(base)
        assert deploy["links"]["page"].startswith(f"{base}/deploys/"), deploy
        assert f"deploy pages at {base}/deploys" in log.read_text()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("listen", ["'::1:0'", "'[::1]:0'"])
def test_an_ipv6_listen_is_linked_in_brackets_as_a_browser_opens_it(
    tmp_path: Path, listen: str
) -> None:
    """The README: `public_url` defaults to `http://<listen>`. `listen: '::1:8787'` (HOST:PORT
    with an IPv6 host) bound, but its links read `http://::1:8787/deploys/…`, which no
    browser or client opens: they name the host in brackets, as a URL writes it."""
    config = agent_config(tmp_path, 0)
    config.write_text(config.read_text().replace("127.0.0.1:0", listen, 1))
    log = tmp_path / "agent.log"
    with listening_until_stopped(str(config), log):
        said = log.read_text()
        found = re.search(r"listening on http://\[::1\]:(\d+) ", said)
        assert found, said
        base = f"http://[::1]:{found[1]}"
        deploy = registered(base)
        assert deploy["links"]["page"].startswith(f"{base}/deploys/"), deploy
        with urllib.request.urlopen(f"{deploy['links']['page']}", timeout=10) as answer:
            assert answer.status == 200  # a page that asks to sign in, at the link given
