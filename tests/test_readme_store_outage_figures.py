"""The figures the README's "Configuration walkthrough" gives for a rollback sender held
by a store that drops packets are the code's: how long one try waits before the agent
looks at the server (`LOOK_S`), how long the look waits for an answer (`PROBE_S`), and the
grace a taker waits for that sender (`TAKEOVER_GRACE_S`). The sentence said the connect
timeout (10 s) held the try, before the look ended it within 4 s."""

from __future__ import annotations

from pathlib import Path

from agent.rollback.delivery import TAKEOVER_GRACE_S
from agent.store.postgres import LOOK_S, PROBE_S
from tests.readme import section
from tests.store.test_postgres_frozen import LONG_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[1]


def test_a_store_dropping_packets_holds_a_try_look_s_plus_probe_s() -> None:
    said = section("Configuration walkthrough")
    assert f"the rollback's `timeout` and {TAKEOVER_GRACE_S:g} s more" in said  # the grace
    held = LOOK_S + PROBE_S
    assert held > TAKEOVER_GRACE_S  # "longer than the grace"
    assert (
        f"one that drops packets may hold a sender's retry up to {held:g} s, longer than the"
        f" grace: a try that has waited {LOOK_S:g} s on the store asks whether the server"
        f" answers a new connection, and ends as an outage when none does within {PROBE_S:g} s"
        " of the time the agent could wait (a stall of its own loop, a GC pause, does not count)"
        " (`LOOK_S` and `PROBE_S` in `agent/store/postgres.py`;"
        f" `tests/store/test_postgres_frozen.py`, with a connect timeout of {LONG_TIMEOUT_S:g} s)"
    ) in said
    assert "up to its connect timeout (10 s)" not in said
    assert (ROOT / "tests/store/test_postgres_frozen.py").is_file()
