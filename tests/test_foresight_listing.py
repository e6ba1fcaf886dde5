"""A registration lists the environment's windows once: the failed releases' (whose
background runs its baseline leaves out) and the provider baselines' (the newest window
that fetched one) read one listing, the larger. Before, it listed them twice (50, then 5
of the same, newest first). What it says is unchanged: the provider baseline is still
looked for among the 5 newest windows only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.analysis.types import Observation
from agent.records import DeployWindow, Page, WindowState
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.evidence import observation_to_dict
from agent.windows.fingerprint import check_fingerprints
from agent.windows.foresight import registration_warnings
from tests.test_foresight import CONFIG

NOW = 1_800_000_000.0
SENTRY = Observation(0.01, count=20, total=2000, periods=60)  # too little to see 2%


class CountingStore(SqliteStore):
    """A SQLite store that notes each listing of windows (environment, limit)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.listed: list[tuple[str | None, int]] = []

    async def list_windows(self, **kwargs: Any) -> Page:
        self.listed.append((kwargs.get("environment"), kwargs.get("limit", 50)))
        return await super().list_windows(**kwargs)


def window(id_: str, at: float, state: WindowState, baseline: bool = False) -> DeployWindow:
    return DeployWindow(
        id=id_,
        environment="production",
        version=id_.removeprefix("dep_"),
        previous_version=None,
        commit=None,
        labels={},
        state=state,
        deployed_at=at,
        ends_at=at + 300,
        created_at=at,
        baseline={"sentry-errors": observation_to_dict(SENTRY)} if baseline else None,
    )


async def test_a_registration_lists_the_windows_once_for_both_readings(tmp_path: Path) -> None:
    env = load_settings_text(CONFIG).environments["production"]
    assert {r.source for r in env.rules} == {"checks", "sentry"}
    assert env.analysis.policy == "sequential"
    store = CountingStore(tmp_path / "postflight.db")
    await store.open()
    try:
        # v1 fetched a Sentry baseline; v2 failed 20 minutes ago, its background runs
        # since are left out; then three more windows, so v1 is the 5th newest
        await store.create_window(window("dep_v1", NOW - 7_200, "passed", baseline=True))
        await store.create_window(window("dep_v2", NOW - 1_200, "failed"))
        for k in range(3):
            await store.create_window(window(f"dep_v3{k}", NOW - 3_700 + k, "passed"))
        check = env.checks[0].name
        print_ = check_fingerprints(env)[check]
        for at in (NOW - 900, NOW - 600):
            summary = {"ok": [0] * 10, "latency": [0.03] * 10}
            await store.add_probe_summary("production", check, at, summary, print_)
        store.listed.clear()
        said = await registration_warnings(store, env, "production", NOW, NOW + 600)
        assert store.listed == [("production", 50)]  # once, for both
        assert [s.split(":")[0] for s in said] == ["baseline", "rule sentry-errors"], said
        assert "2 background runs left out of the baseline: they probed v2" in said[0]

        # one more window: v1 is the 6th newest, beyond the 5 a provider baseline is
        # looked for in, as before; the failed release still read from the same listing
        await store.create_window(window("dep_v4", NOW - 3_600, "passed"))
        store.listed.clear()
        said = await registration_warnings(store, env, "production", NOW, NOW + 600)
        assert store.listed == [("production", 50)]
        assert [s.split(":")[0] for s in said] == ["baseline"], said
    finally:
        await store.close()
