"""kill -9 at random instants of a window that breaches, then restart: everything the
window calls for (contract §3, §4, §7), counted at its receivers.

`crash_end`'s window (it fails at its first round: a breach, a provider outage, the
rollback, its alerts, Sentry markers, GitHub deployment and commit statuses), its agents
killed from outside at instants drawn over the first seconds after the registration,
where every one of those is stored or sent, each restarted after a short time down.
On SQLite one agent; on PostgreSQL (`store_url`) `replicas` agents, each under a replica
id of its own, a victim drawn at each kill. Used by `bench/crash_resume.py --anywhere`.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.crash import request_json, store_rows, until
from tests.e2e.crash_end import (
    CLAIMS,
    FINAL_STATUSES,
    GH_TOKEN,
    PREVIOUS,
    SECRET,
    SENTRY_TOKEN,
    VERSION,
    EndTrial,
    _post,
    _Receivers,
    _stopped,
    claims_settled,
    counted,
    start_agent,
    write_config,
)
from tests.fakes import github as gh
from tests.fakes.sentry import FakeSentry
from tests.ports import free_port
from tests.receivers import JsonSink, RollbackReceiver

KILL_SPAN_S = (0.0, 4.0)
"""Where a kill lands, after the registration: the first round (0.5 s), its alerts, the
end, the rollback and what follows it are all out within this on a loaded host."""
DOWN_S = (0.2, 1.5)
"""How long a killed agent stays down before its restart."""


def _claims(store_url: str | None, workdir: Path, window_id: str) -> list[tuple[Any, ...]]:
    if store_url is None:
        return store_rows(workdir, CLAIMS, window_id)
    import asyncpg

    from agent.store.postgres import numbered

    async def read() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(store_url)
        try:
            return [tuple(r) for r in await conn.fetch(numbered(CLAIMS), window_id)]
        finally:
            await conn.close()

    return asyncio.run(read())


def run_anywhere_trial(
    workdir: Path,
    rng: random.Random,
    *,
    store_url: str | None = None,
    replicas: int = 1,
    kills: int = 1,
    github_fails: dict[str, Any] | None = None,
    down: tuple[float, float] = DOWN_S,
) -> tuple[EndTrial, list[tuple[float, int]]]:
    """One window, `kills` kills -9 at instants drawn in `KILL_SPAN_S`; what each receiver
    took once the agents settled, and each kill's instant (s after the registration) and
    victim: a replica up (one drawn while every one restarts lands once one is up).
    `github_fails`: a failure GitHub's fake is told of first (`tests/fakes/_server.py`);
    `down`: the time a killed agent stays down is drawn in it ((0, 0): restarted at once,
    as a supervisor does)."""
    workdir.mkdir(parents=True, exist_ok=True)
    sink_log, receiver_log = workdir / "sink.jsonl", workdir / "receiver.jsonl"
    helpers = _Receivers()
    agents: list[subprocess.Popen[bytes] | None] = [None] * replicas
    try:
        sink_url = helpers.start(JsonSink(log=sink_log))
        receiver_url = helpers.start(RollbackReceiver(SECRET, log=receiver_log))
        sentry_url = helpers.start(FakeSentry(token=SENTRY_TOKEN))
        github_url = helpers.start(gh.FakeGitHub(token=GH_TOKEN))
        _post(f"{sentry_url}/_fake/fail", {"kind": "500", "match": "/events"})
        if github_fails is not None:
            _post(f"{github_url}/_fake/fail", github_fails)
        ports = [free_port() for _ in range(replicas)]
        homes = [workdir / f"r{i}" for i in range(replicas)]
        configs = []
        for home, port in zip(homes, ports, strict=True):
            home.mkdir(exist_ok=True)
            config = write_config(
                workdir,
                port,
                sink=sink_url.replace("http://", "json://", 1),
                receiver=receiver_url,
                sentry=sentry_url,
                github=github_url,
                store_url=store_url,
            )
            configs.append(config.rename(home / "postflight.yaml"))

        def start(i: int) -> subprocess.Popen[bytes]:
            env = {"POSTFLIGHT_REPLICA_ID": f"r{i}"}
            return start_agent(homes[i], configs[i], ports[i], sitecustomize="", env=env)

        for i in range(replicas):
            agents[i] = start(i)
        at = sorted(rng.uniform(*KILL_SPAN_S) for _ in range(kills))
        registered = time.monotonic()
        deploy = request_json(
            "POST",
            f"http://127.0.0.1:{ports[0]}/v1/deploys",
            {
                "environment": "production",
                "version": VERSION,
                "previous_version": PREVIOUS,
                "commit": gh.COMMIT,
                "labels": {
                    "github.repository": gh.REPOSITORY,
                    "github.deployment": str(gh.DEPLOYMENT_ID),
                },
            },
        )
        up = [True] * replicas
        failed: list[BaseException] = []

        def restart(i: int, down: float) -> None:
            try:
                time.sleep(down)
                agents[i] = start(i)
                up[i] = True
            except BaseException as exc:
                failed.append(exc)

        landed: list[tuple[float, int]] = []
        restarts: list[threading.Thread] = []
        for when in at:
            # restarts go on meanwhile (a second kill lands on the other replica while
            # the first starts again: a start takes seconds on a loaded host)
            time.sleep(max(0.0, registered + when - time.monotonic()))
            until(lambda: any(up) or failed, 180)
            victim = rng.choice([i for i in range(replicas) if up[i]])
            landed.append((round(time.monotonic() - registered, 2), victim))
            up[victim] = False
            agent = agents[victim]
            assert agent is not None
            agent.send_signal(signal.SIGKILL)
            agent.wait()
            thread = threading.Thread(target=restart, args=(victim, rng.uniform(*down)))
            thread.start()
            restarts.append(thread)
        for thread in restarts:
            thread.join()
        if failed:
            raise failed[0]
        url = f"http://127.0.0.1:{ports[0]}/v1/deploys/{deploy['id']}"

        def settled() -> bool:
            state = request_json("GET", url)
            return (
                state["state"] != "watching"
                and (state.get("rollback") or {}).get("state") != "pending"
                and claims_settled(_claims(store_url, workdir, deploy["id"]), FINAL_STATUSES)
            )

        try:
            until(settled, 90)
        except AssertionError as exc:
            state = request_json("GET", url)
            claims = _claims(store_url, workdir, deploy["id"])
            seen = {k: state.get(k) for k in ("state", "rounds", "rollback")}
            raise AssertionError(f"{exc}: {seen}, claims {claims}") from None
        state = request_json("GET", url)["state"]
        for agent in agents:
            assert agent is not None
            _stopped(agent)
        trial = counted(True, state, sink_log, receiver_log, sentry_url, github_url)
        return trial, landed
    finally:
        for agent in agents:
            if agent is not None and agent.poll() is None:
                agent.send_signal(signal.SIGKILL)
                agent.wait()
        helpers.close()
