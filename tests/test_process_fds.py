"""The agent's open file descriptors in `/metrics`, as counted from outside its process."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.test_metrics_series import _scrape


@pytest.mark.timeout(120)
def test_metrics_say_the_agents_open_descriptors_as_proc_counts_them(tmp_path: Path) -> None:
    """An agent near its `ulimit -n` (idle probe connections, each with a duplicated stamp
    socket) had no series saying so: `postflight_process_open_fds` and `_max_fds` now,
    read against `/proc/<pid>/fd` of the running `postflight run`."""
    from tests.cli.test_run_start import TOKEN, free_port, listening_until_stopped

    port = free_port()
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server: {{listen: 127.0.0.1:{port}, api_tokens: [{TOKEN}]}}\n"
        f"store: {{url: 'sqlite:///{tmp_path / 'x.db'}'}}\n"
        "environments:\n"
        "  one: {base_url: 'http://127.0.0.1:9'}\n"
    )
    with listening_until_stopped(str(config), tmp_path / "agent.log") as agent:
        text = _scrape(f"http://127.0.0.1:{port}/metrics")
        counted = len(os.listdir(f"/proc/{agent.pid}/fd"))
    said = re.search(r"^postflight_process_open_fds (\S+)$", text, re.M)
    assert said is not None, text
    assert abs(float(said.group(1)) - counted) <= 2  # the scrape's own socket, a log file
    assert re.search(r"^postflight_process_max_fds \d", text, re.M)
