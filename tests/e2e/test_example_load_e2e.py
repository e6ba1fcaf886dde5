"""Contract §6, "every key in it must do what its comment says", for the example's
`feed-latency` load check (`rate: 20/s  # open model: constant arrival rate`), through the
real `postflight check` process: its duration cut to 1 s, at a target holding each request
1.5 s (`HoldingTarget`), the target counts the rate's requests (a second of warm-up and
the measured second: 40), several open at once (a closed model, one answer awaited before
the next request, holds one), and the row passes. Only the check's unit tests
(tests/checks/test_checks_load.py) held the open model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from checks.load import LoadCheckConfig
from tests.cli_process import awaited_cli
from tests.e2e.test_readme_probe_concurrency_e2e import HoldingTarget, holding
from tests.spec_example import example_check

__all__ = ["holding"]  # the fixture, used by name

pytestmark = pytest.mark.timeout(120)


def example_load_check() -> dict[str, Any]:
    """The example's `feed-latency` check of production, as written, but for a 1 s run."""
    check = example_check("production", "feed-latency")
    assert (check["type"], check["rate"]) == ("load", "20/s"), check
    return {**check, "duration": "1s"}


async def test_the_examples_load_check_sends_its_rate_whatever_the_answers_take(
    tmp_path: Path, holding: tuple[HoldingTarget, str]
) -> None:
    counted, base_url = holding
    check = example_load_check()
    warm, measured = LoadCheckConfig.model_validate(check).requests()
    assert (warm, measured) == (20, 20)  # the default 1 s warm-up, and 1 s, at 20/s
    config = tmp_path / "postflight.yaml"
    config.write_text(
        "server: {api_tokens: [tok-1234567890abcdef]}\n"
        "environments:\n  production:\n"
        f"    base_url: {base_url}\n"
        f"    checks:\n      - {json.dumps(check)}\n"
    )
    code, out = await awaited_cli("check", "--config", str(config), "--env", "production")
    assert code == 0, out
    row = next(line for line in out.splitlines() if line.startswith("feed-latency "))
    assert row.split()[2] == "pass", out
    assert counted.hits["/api/feed"] == warm + measured, (counted.hits, out)
    # 20/s of answers held 1.5 s: ~30 open at once; one at a time would be a closed model
    assert counted.most["/api/feed"] >= 3, (counted.most, out)
