"""`listen: 127.0.0.1:0`: the kernel picks a free port as it binds, and the agent says the
one it took (its `listening on` line) and builds its links on it. A harness (the demo, a
test) that picked a port itself by binding 0, reading it and closing could lose it to
another process before the agent bound it; it was refused ("port 0 is not one of 1-65535")."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from tests.cli.test_run_start import TOKEN, agent_config, listening_until_stopped


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
        register = urllib.request.Request(
            f"{base}/v1/deploys",
            data=json.dumps({"environment": "production", "version": "v2"}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(register, timeout=10) as answer:
            deploy = json.load(answer)
        assert deploy["links"]["page"].startswith(f"{base}/deploys/"), deploy
        assert f"deploy pages at {base}/deploys" in log.read_text()
