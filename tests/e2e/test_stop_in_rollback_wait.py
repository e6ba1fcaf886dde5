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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import SECRET, TOKEN, environment
from tests.e2e.crash import free_port
from tests.e2e.test_replicas import Daemon
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

HEADERS = {"Authorization": f"Bearer {TOKEN}"}

WAITS = {"past-it": 30, "within-the-grace": 3}
"""Each environment's receiver answers its rollback's first attempt 503 with this
`Retry-After` (seconds), then 200: within the stop's grace (5 s of the default 8 s
`shutdown_timeout`) or past it. One daemon has both, each its own receiver."""


def daemon_config(workdir: Path, rollback: str) -> str:
    """A daemon's configuration on its own SQLite file: one 8 s `production` window on a
    target that does not answer, rolled back by `rollback` (its port left to fill)."""
    return daemon_config_of(workdir, {"production": rollback})


def daemon_config_of(workdir: Path, rollbacks: dict[str, str]) -> str:
    """`daemon_config` with an 8 s window on an environment of each name in `rollbacks`,
    rolled back by its value."""
    environments = "".join(
        environment(name, f"http://127.0.0.1:{free_port()}", window="8s", extra=rollback)
        for name, rollback in rollbacks.items()
    )
    return (
        f"server:\n  listen: 127.0.0.1:{{port}}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: sqlite:///{workdir / 'postflight.db'}\n"
        "environments:\n" + textwrap.indent(environments, "  ")
    )


async def registered(http: aiohttp.ClientSession, daemon: Daemon, version: str = "v2") -> str:
    """`version` registered in `production` on `daemon`: its deploy id."""
    body = {"environment": "production", "version": version}
    async with http.post(f"{daemon.url}/v1/deploys", json=body) as r:
        assert r.status == 201, await r.text()
        deploy_id: str = (await r.json())["id"]
        return deploy_id


async def stopped_in_its_wait(
    http: aiohttp.ClientSession,
    daemon: Daemon,
    receiver: RollbackReceiver,
    *,
    within: float = 30.0,
    then: float = 0.0,
) -> str:
    """`daemon` ready, v2 registered in `production` on it, and stopped (SIGTERM, exit 0)
    `then` seconds after `receiver` took its first attempt (within `within`): the deploy's
    id."""
    await daemon.ready(http)
    deploy_id = await registered(http, daemon)
    await receiver.wait_for_attempts(1, within=within)
    await asyncio.sleep(then)
    daemon.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.proc.wait, 15) == 0, daemon.said()
    return deploy_id


async def rollback_of(
    http: aiohttp.ClientSession, daemon: Daemon, deploy_id: str
) -> dict[str, Any]:
    async with http.get(f"{daemon.url}/v1/deploys/{deploy_id}") as r:
        assert r.status == 200, await r.text()
        return dict((await r.json())["rollback"] or {})


@dataclass
class Stopped:
    """What the stop and the next start did with each environment's rollback (`WAITS`)."""

    exit_code: int
    said: str
    """The daemon's log, of its stop (not its next start's)."""
    deploys: dict[str, str] = field(default_factory=dict)
    attempts_at_stop: dict[str, int] = field(default_factory=dict)
    """How many attempts each receiver had when the daemon had stopped."""
    resumed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each rollback as the next start showed it first."""
    settled: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each rollback whose asked wait ends within the test (`WAITS`), once not pending."""
    accepted: dict[str, list[bool]] = field(default_factory=dict)
    """Each receiver's attempts, accepted or not, at the end."""


async def stop_in_the_waits(workdir: Path) -> Stopped:
    """One daemon with both environments of `WAITS`: each deploy fails, its rollback's
    first attempt is answered 503 with its `Retry-After`, and the daemon is stopped
    (SIGTERM) while both wait, then started again."""
    receivers = {
        name: RollbackReceiver(SECRET, [f"503:retry-after={wait}"]) for name, wait in WAITS.items()
    }
    for receiver in receivers.values():
        await receiver.start()
    text = daemon_config_of(
        workdir,
        {
            name: f"rollback: {{url: {receiver.url}, secret: {SECRET}, backoff: 100ms}}"
            for name, receiver in receivers.items()
        },
    )
    daemon = Daemon(workdir, "first", text, None)
    restarted: Daemon | None = None
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            await daemon.ready(http)
            deploys = {}
            for name in WAITS:  # the longest wait's first: the shortest has the most left
                async with http.post(
                    f"{daemon.url}/v1/deploys", json={"environment": name, "version": "v2"}
                ) as r:
                    assert r.status == 201, await r.text()
                    deploys[name] = (await r.json())["id"]
            for receiver in receivers.values():
                await receiver.wait_for_attempts(1, within=30)
            for _ in range(300):
                if all(waits_to_retry(daemon.said(), d) for d in deploys.values()):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"never said both wait to retry:\n{daemon.said()}")
            daemon.proc.send_signal(signal.SIGTERM)
            exit_code = await asyncio.to_thread(daemon.proc.wait, 15)
            stopped = Stopped(exit_code, daemon.said(), deploys)
            stopped.attempts_at_stop = {n: len(r.attempts) for n, r in receivers.items()}
            # the next start sends each, once its asked wait is over, once
            restarted = Daemon(workdir, "first", text, None)
            await restarted.ready(http)
            for name, deploy_id in deploys.items():
                stopped.resumed[name] = await rollback_of(http, restarted, deploy_id)
            for name, deploy_id in deploys.items():
                if WAITS[name] > 10:
                    continue  # its wait outlasts the test: it is stored, and resumed (above)
                for _ in range(300):
                    done = await rollback_of(http, restarted, deploy_id)
                    if done["state"] != "pending":
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(
                        f"the rollback of {name} ({deploy_id}) never left pending after"
                        f" the next start: {done}\n{restarted.said()}"
                    )
                stopped.settled[name] = done
            stopped.accepted = {n: [a.accepted for a in r.attempts] for n, r in receivers.items()}
            return stopped
    finally:
        daemon.kill()
        if restarted is not None:
            restarted.kill()
        for receiver in receivers.values():
            await receiver.stop()


def waits_to_retry(said: str, deploy_id: str) -> bool:
    """Whether the daemon said it waits to retry the rollback of `deploy_id`."""
    return any(deploy_id in line and "retrying in" in line for line in said.splitlines())


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Stopped:
    """`stop_in_the_waits`, once for this module's tests: each wait took a daemon, a stop
    and a next start of its own. The stop hands each rollback back on its own (its own
    task, its own words), so one stop with both waits says of each what a stop with it
    alone did; and the code before stopped inside both (the one within its grace sent
    again inside it, the other was cut off)."""
    return asyncio.run(stop_in_the_waits(tmp_path_factory.mktemp("waits")))


ONE_STOP = pytest.mark.xdist_group("stop-in-rollback-wait")
"""This module's tests on one worker, which runs `stopped` once (`--dist loadgroup`)."""


@ONE_STOP
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(WAITS))
def test_a_stop_while_a_rollback_waits_to_retry_leaves_it_to_the_next_start(
    stopped: Stopped, name: str
) -> None:
    """The receiver answers the first attempt 503 with `Retry-After`, then 200."""
    assert stopped.exit_code == 0, stopped.said
    assert stopped.attempts_at_stop[name] == 1, stopped.accepted  # none inside the stop
    assert "cut off" not in stopped.said, stopped.said
    left = [line for line in stopped.said.splitlines() if stopped.deploys[name] in line]
    assert [m for m in left if "left pending to the next start or another replica" in m], left
    # ('pending', 2): its second attempt stored and out, not answered yet
    expected = (("pending", 1), ("pending", 2), ("delivered", 2))
    pending = stopped.resumed[name]
    assert (pending["state"], pending["attempts"]) in expected, pending
    if WAITS[name] > 10:
        return  # its wait outlasts the test: it is stored, and resumed (above)
    done = stopped.settled[name]
    assert (done["state"], done["attempts"]) == ("delivered", 2), done
    assert stopped.accepted[name] == [False, True], stopped.accepted
