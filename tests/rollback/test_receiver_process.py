"""`python -m tests.receivers rollback` as its own process: what the kill -9 test uses."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.metrics import Metrics
from agent.rollback.delivery import RollbackDelivery
from agent.settings import RollbackSettings
from agent.store.sqlite import SqliteStore
from tests.rollback.support import SECRET, FakeSleep, stored_intent

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
async def test_standalone_receiver_logs_every_attempt_as_a_json_line(
    tmp_path: Path, store: SqliteStore
) -> None:
    log = tmp_path / "attempts.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.receivers", "rollback",
        "--secret", SECRET, "--log", str(log), "--script", "503:retry-after=1,200",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
        assert ready["kind"] == "rollback" and ready["port"] > 0
        sleep = FakeSleep()
        sender = RollbackDelivery(store, Metrics(), sleep=sleep)
        intent = await stored_intent(store)
        done = await sender.deliver(
            intent, RollbackSettings(url=ready["url"], secret=SECRET), "production"
        )
        await sender.aclose()
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)

    assert process.returncode == 0
    assert done.state == "delivered" and sleep.waits == [1.0]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(a["n"], a["status"], a["accepted"]) for a in lines] == [
        (1, 503, False),
        (2, 200, True),
    ]
    assert all(a["signature_ok"] and a["idempotency_key"] == "dep_01JDTEST" for a in lines)
    assert {a["body"] for a in lines} == {intent.body}


AS_A_PROCESS = """
import contextlib, io, json, runpy, sys
sys.argv = ["tests.receivers", "--help"]
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    runpy.run_module("tests.receivers", run_name="__main__")
from aiohttp import connector
print(json.dumps({"pytest": sorted(n for n in sys.modules if "pytest" in n),
                  "ca": connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509"]}))
"""


def test_a_receiver_as_its_own_process_imports_neither_pytest_nor_the_ca_bundle() -> None:
    """The kill -9, chaos and replica tests start receivers and targets as processes of
    their own, which use neither pytest nor TLS: importing pytest was 0.1-0.2 s of CPU a
    start (the fixtures are `tests.receiver_fixtures`'), aiohttp's reading of the CA
    bundle 60-80 ms more."""
    said = json.loads(
        subprocess.run(
            [sys.executable, "-c", AS_A_PROCESS],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )
    assert said == {"pytest": [], "ca": 0}
