"""Replica news over PostgreSQL, the parts that need no server: payloads within the
NOTIFY limit, our own echo ignored, another's news never relayed back."""

from __future__ import annotations

from agent.web.feed import DeployFeed
from agent.web.pg_news import PgNews, payloads


def test_many_changed_windows_go_out_in_payloads_under_the_notify_limit() -> None:
    ids = {f"dep_{n:026d}" for n in range(1000)}
    sent = list(payloads("origin", ids))
    assert len(sent) > 1
    assert all(len(p.encode()) < 8000 and p.startswith("origin ") for p in sent)
    assert {i for p in sent for i in p.split(" ", 1)[1].split(",")} == ids


def test_news_from_another_replica_wakes_readers_and_is_not_sent_back() -> None:
    feed = DeployFeed()
    news = PgNews("postgresql://unused", feed)
    with feed.subscribe("dep_a") as sub:
        news._heard(None, 0, "", f"{news.origin} dep_a")  # our own, echoed by the server
        assert not sub.wake.is_set()
        news._heard(None, 0, "", "another dep_a,dep_b")
        assert sub.wake.is_set() and sub.changed
    assert news._pending == set()  # nothing to relay: it was not our change
    feed.publish("dep_c")  # a write of ours
    assert news._pending == {"dep_c"}
