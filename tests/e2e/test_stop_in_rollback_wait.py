"""A stop (SIGTERM) while a rollback waits to retry leaves it to the next start at once.

Nothing of the rollback is in flight in its wait (a `Retry-After`, a backoff): the stop
hands it back as stored, where it waited out its whole grace (5 s of the default 8 s
`shutdown_timeout`) for it, made the next attempt inside the stop when the wait ended
within the grace, and logged 'did not finish within 5.0 s; cut off' when it did not.
Counted at the receiver: the attempt is made once, by the next start.
"""

from __future__ import annotations

import asyncio
import signal
import textwrap
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import SECRET, TOKEN, environment, free_port
from tests.e2e.test_replicas import Daemon
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def config(workdir: Path, receiver: RollbackReceiver) -> str:
    return daemon_config(
        workdir, f"rollback: {{url: {receiver.url}, secret: {SECRET}, backoff: 100ms}}"
    )


def daemon_config(workdir: Path, rollback: str) -> str:
    """A daemon's configuration on its own SQLite file: one 8 s `production` window on a
    target that does not answer, rolled back by `rollback` (its port left to fill)."""
    production = environment(
        "production", f"http://127.0.0.1:{free_port()}", window="8s", extra=rollback
    )
    return (
        f"server:\n  listen: 127.0.0.1:{{port}}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: sqlite:///{workdir / 'postflight.db'}\n"
        "environments:\n" + textwrap.indent(production, "  ")
    )


async def rollback_of(http: aiohttp.ClientSession, daemon: Daemon, deploy_id: str) -> dict:
    async with http.get(f"{daemon.url}/v1/deploys/{deploy_id}") as r:
        assert r.status == 200, await r.text()
        return dict((await r.json())["rollback"] or {})


@pytest.mark.timeout(120)
@pytest.mark.parametrize("retry_after", [2, 30], ids=["within-the-grace", "past-it"])
async def test_a_stop_while_a_rollback_waits_to_retry_leaves_it_to_the_next_start(
    tmp_path: Path, retry_after: int
) -> None:
    """The receiver answers the first attempt 503 with `Retry-After`, then 200."""
    receiver = RollbackReceiver(SECRET, [f"503:retry-after={retry_after}"])
    await receiver.start()
    text = config(tmp_path, receiver)
    daemon = Daemon(tmp_path, "first", text, None)
    restarted: Daemon | None = None
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            await daemon.ready(http)
            async with http.post(
                f"{daemon.url}/v1/deploys", json={"environment": "production", "version": "v2"}
            ) as r:
                assert r.status == 201, await r.text()
                deploy_id = (await r.json())["id"]
            await receiver.wait_for_attempts(1, within=30)
            for _ in range(300):
                if "retrying in" in daemon.said():
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"never said it waits to retry:\n{daemon.said()}")
            daemon.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(daemon.proc.wait, 15) == 0, daemon.said()
            said = daemon.said()
            assert len(receiver.attempts) == 1, receiver.attempts  # none inside the stop
            assert "cut off" not in said, said
            assert "left pending to the next start or another replica" in said, said
            # the next start sends it, once the asked wait is over, once
            restarted = Daemon(tmp_path, "first", text, None)
            await restarted.ready(http)
            pending = await rollback_of(http, restarted, deploy_id)
            # ('pending', 2): its second attempt stored and out, not answered yet
            expected = (("pending", 1), ("pending", 2), ("delivered", 2))
            assert (pending["state"], pending["attempts"]) in expected, pending
            if retry_after > 10:
                return  # its wait outlasts the test: it is stored, and resumed (above)
            for _ in range(300):
                done = await rollback_of(http, restarted, deploy_id)
                if done["state"] != "pending":
                    break
                await asyncio.sleep(0.1)
            assert (done["state"], done["attempts"]) == ("delivered", 2), done
            assert [a.accepted for a in receiver.attempts] == [False, True], receiver.attempts
    finally:
        daemon.kill()
        if restarted is not None:
            restarted.kill()
        await receiver.stop()
