"""A short configured secret is masked where it stands as a token, not inside words.

`api_tokens: [guess]` made `postflight run` log "an API token shorter than 16 is
***able", and `[token]` "server.api_***s[0]": the mask's place gave the secret away
and the warning that should have helped could not be read.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.e2e.crash import free_port, start_agent

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(90)
def test_a_short_api_token_is_not_masked_inside_the_words_of_its_own_warning(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server:\n  listen: 127.0.0.1:{port}\n  api_tokens: [guess, token]\n"
        f"store:\n  url: sqlite:///{tmp_path / 'postflight.db'}\n"
        "environments:\n  production:\n"
        f"    base_url: http://127.0.0.1:{free_port()}\n"
        "    checks:\n      - {name: api-health, type: http, path: /health}\n"
        "    rules:\n      - {name: errors, source: checks, metric: error_rate, max: 0.05}\n"
    )
    log = tmp_path / "agent.log"
    agent = start_agent(config, port, log)
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    messages = [
        json.loads(line)["msg"] for line in log.read_text().splitlines() if line.startswith("{")
    ]
    warned = [m for m in messages if "shorter than 16 is guessable" in m]
    assert len(warned) == 2, messages
    assert all("is guessable" in m for m in warned), warned
    assert any("server.api_tokens[0] " in m for m in warned), warned  # was 'api_***s[0]'
    assert any("server.api_tokens[1] " in m for m in warned), warned
    # `token` is a word: masked where it stands whole ('an API *** shorter'): the
    # warning itself says so short a token is guessable; never inside a word
    for line in messages:
        assert line.replace("an API *** shorter", "").count("***") == 0, line
    assert "***able" not in log.read_text()
