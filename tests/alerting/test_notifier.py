"""The apprise notifier against real targets: a json:// sink and an aiosmtpd server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from agent.metrics import Metrics
from agent.records import DeployWindow
from agent.rollback.contract import rollback_intent
from agent.rollback.delivery import RollbackDelivery
from agent.settings import AlertChannel, RollbackSettings
from agent.store.sqlite import SqliteStore
from alerting.events import Alert
from alerting.notifier import Notifier, channel_url_errors
from alerting.templates import render
from common.redaction import Redactor
from tests.receivers import HangingServer, JsonSink, RollbackReceiver, SmtpSink, text_of

RULE = {
    "name": "probe-errors",
    "source": "checks",
    "metric": "error_rate",
    "observed": 0.31,
    "baseline": 0.0,
    "threshold": "max 0.05",
    "detail": "31 of 100 probes failed",
}


def alert(event: Any = "rollback_requested", **kw: Any) -> Alert:
    fields: dict[str, Any] = {
        "event": event,
        "environment": "production",
        "version": "v2.4.1",
        "deploy_id": "dep_01JDTEST",
        "reason": "probe-errors: error_rate 0.31 > max 0.05",
        "rules": [RULE],
        "previous_version": "v2.4.0",
    }
    fields.update(kw)
    return Alert(**fields)


def notifier(
    channels: Sequence[tuple[str, list[str]]],
    metrics: Metrics,
    *,
    timeout: float = 5.0,
    secrets: Sequence[str] = (),
) -> Notifier:
    configured = [AlertChannel(url=url, tags=tags) for url, tags in channels]
    every = [*secrets, *(c.url.get_secret_value() for c in configured)]
    return Notifier(configured, timeout=timeout, redact=Redactor(every), metrics=metrics)


def sent(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("postflight_alerts_total", {"result": result}) or 0.0


async def test_json_and_email_channels_receive_the_alert(
    json_sink: JsonSink, smtp_sink: SmtpSink, metrics: Metrics
) -> None:
    notify = notifier([(json_sink.url(), ["oncall"]), (smtp_sink.url(), ["oncall"])], metrics)

    outcome = await notify.send(alert(), ["oncall"])

    assert outcome.result == "sent" and outcome.sent == 2
    [note] = json_sink.notifications
    assert note.title == "[postflight] production v2.4.1: rollback requested (probe-errors)"
    assert note.type == "failure"
    assert "`probe-errors`" in note.message and "observed **31%** vs baseline 0%" in note.message
    assert "`dep_01JDTEST`" in note.message
    [mail] = smtp_sink.messages
    assert mail["Subject"] == note.title
    assert mail["To"] == "oncall@example.com"
    text = text_of(mail)
    assert "dep_01JDTEST" in text and "31%" in text and "max 0.05" in text
    assert sent(metrics, "sent") == 2


async def test_an_e_mails_plain_text_shows_the_deploy_page_and_rule_links(
    smtp_sink: SmtpSink, metrics: Metrics
) -> None:
    """The plain-text part of an e-mail said "Open the deploy" with no URL: apprise's text
    of a markdown link keeps only its words."""
    page = "https://postflight.example.com/deploys/dep_01JDTEST?view=v1.9.abc"
    query = "https://prometheus.example.com/graph?g0.expr=up&g0.tab=0"
    notify = notifier([(smtp_sink.url(), [])], metrics)

    await notify.send(alert(rules=[{**RULE, "link": query}], link=page), [])

    [mail] = smtp_sink.messages
    text = text_of(mail)
    assert page in text and query in text


async def test_an_e_mails_plain_text_keeps_each_rule_and_the_deploy_on_one_line(
    smtp_sink: SmtpSink, metrics: Metrics
) -> None:
    """Seen in a real daemon's mail: apprise's HTML-to-text conversion takes an inline
    `<code>` for a block, so the plain-text part broke every line at a rule's name, the
    deploy id and the commit ("-" / "probe-errors" / "(checks, error_rate): …")."""
    notify = notifier([(smtp_sink.url(), [])], metrics)

    await notify.send(alert(commit="9fceb02"), [])

    [mail] = smtp_sink.messages
    lines = text_of(mail).splitlines()
    assert "- probe-errors (checks, error_rate): observed 31% vs baseline 0%, threshold" \
        " max 0.05 (5%) — 31 of 100 probes failed" in lines  # fmt: skip
    assert "Deploy dep_01JDTEST · production · v2.4.0 → v2.4.1 · commit 9fceb02" in lines


async def test_what_a_target_answered_is_text_in_the_e_mail_not_markup(
    smtp_sink: SmtpSink, metrics: Metrics
) -> None:
    """A check's detail quotes the target's answer: a proxy's HTML error page, with a link
    and an unclosed comment, and a markdown link. In the e-mail it is text: the HTML part
    has no tag or link of its own (the page's link swallowed the rest of the body)."""
    page = "https://postflight.example.com/deploys/dep_01JDTEST?view=v1.9.abc"
    answer = (
        '<html><body><h1>Bad Gateway</h1><a href="https://evil.example/ok">Confirm</a>'
        "[approve](https://evil.example/md) <!-- </body></html>"
    )
    rule = {**RULE, "detail": f"api-health: body: expected JSON, got {answer!r}"}
    notify = notifier([(smtp_sink.url(), [])], metrics)

    await notify.send(
        alert(rules=[rule], link=page, reason=f"probe-errors: {answer}", commit="`<b>x</b>"), []
    )

    [mail] = smtp_sink.messages
    html = str(mail.get_body(preferencelist=("html",)).get_content())  # type: ignore[union-attr]
    assert "evil.example" in html  # shown, as text
    assert "<a " not in html.replace(f'<a href="{page}">', "")
    assert "<h1>" not in html and "<!--" not in html and "<b>" not in html
    text = text_of(mail)
    assert "<h1>Bad Gateway</h1>" in text and "[approve](https://evil.example/md)" in text


async def test_a_versions_or_answers_stars_and_underscores_reach_the_e_mail_as_written(
    smtp_sink: SmtpSink, metrics: Metrics
) -> None:
    """Markdown emphasis in text the agent did not write: a version `v2.4.0 *hotfix*` and a
    target's Python traceback naming `__init__.py` came out as "v2.4.0 hotfix" (italic)
    and a bold "init.py", the characters gone from the text part. An underscore inside a
    word (`feature_flag`) and the redaction mask `***` stay unescaped: they are no
    emphasis, and raw-markdown chats show them as they are."""
    rule = {**RULE, "detail": 'api-health: body: File "/app/__init__.py", line 3 (2*3*4)'}
    notify = notifier([(smtp_sink.url(), [])], metrics)

    await notify.send(
        alert(rules=[rule], previous_version="v2.4.0 *hotfix*", version="v2.4.1_rc_1"), []
    )

    [mail] = smtp_sink.messages
    html = str(mail.get_body(preferencelist=("html",)).get_content())  # type: ignore[union-attr]
    assert "<em>" not in html and "<strong>init</strong>" not in html
    text = text_of(mail)
    assert "v2.4.0 *hotfix* → v2.4.1_rc_1" in text
    assert 'File "/app/__init__.py", line 3 (2*3*4)' in text
    raw = render(alert(reason="login failed with *** for feature_flag"))[1]
    assert "login failed with *** for feature_flag" in raw


async def test_e_mails_one_after_another_are_each_sent_and_counted_sent(
    smtp_sink: SmtpSink, metrics: Metrics
) -> None:
    """apprise waits 5.5 s between two e-mails through one channel (its throttle): past a
    4 s timeout, the second was counted and logged as failed, then delivered anyway.

    4 s, not 2: a send's own SMTP exchange, alone in its budget (the timeout less the
    0.4 s pause it is cut to), took 2.1 s at load 12 (the first, loading the mail and
    Markdown code on the way), and one e-mail is sent beforehand so those are loaded
    (and so the first of the three is throttled too). Each send still waits what remains
    of 5.5 s from the one before with the throttle uncut, past the 4 s."""
    notify = notifier([(smtp_sink.url(), [])], metrics, timeout=4.0)
    await notify.send(alert("breach"), [])  # warm: apprise's mail and Markdown code loaded
    await smtp_sink.wait_for(1)
    smtp_sink.messages.clear()
    metrics_before = sent(metrics, "sent"), sent(metrics, "failed")

    first = await notify.send(alert("breach"), [])
    second, third = await asyncio.gather(
        notify.send(alert("rollback_requested"), []), notify.send(alert("passed", rules=[]), [])
    )

    assert [o.result for o in (first, second, third)] == ["sent"] * 3
    counted = sent(metrics, "sent") - metrics_before[0], sent(metrics, "failed") - metrics_before[1]
    assert counted == (3, 0)
    assert len(smtp_sink.messages) == 3


async def test_breach_is_a_warning_and_passed_a_success(
    json_sink: JsonSink, metrics: Metrics
) -> None:
    notify = notifier([(json_sink.url(), [])], metrics)
    await notify.send(alert("breach"), [])
    await notify.send(alert("passed", rules=[]), [])
    assert [n.type for n in json_sink.notifications] == ["warning", "success"]


async def test_tags_pick_the_channels(json_sink: JsonSink, metrics: Metrics) -> None:
    notify = notifier(
        [
            (json_sink.url("chat"), ["oncall"]),
            (json_sink.url("mail"), ["email"]),
            (json_sink.url("both"), ["oncall", "email"]),
        ],
        metrics,
    )

    await notify.send(alert(), ["email"])
    assert sorted(n.path for n in json_sink.notifications) == ["/both", "/mail"]

    json_sink.notifications.clear()
    await notify.send(alert(), [])  # an environment without tags: every channel
    assert sorted(n.path for n in json_sink.notifications) == ["/both", "/chat", "/mail"]

    json_sink.notifications.clear()
    outcome = await notify.send(alert(), ["pager"])
    assert outcome.result == "unrouted" and json_sink.notifications == []


async def test_a_failing_channel_is_counted_and_does_not_stop_the_others(
    json_sink: JsonSink, metrics: Metrics
) -> None:
    broken = JsonSink()
    broken.fail_always(500)
    await broken.start()
    try:
        notify = notifier([(broken.url(), []), (json_sink.url(), [])], metrics)
        outcome = await notify.send(alert(), [])
    finally:
        await broken.stop()

    assert outcome.result == "partial" and outcome.delivered
    assert [c.sent for c in outcome.channels] == [False, True]
    assert len(json_sink.notifications) == 1
    assert sent(metrics, "sent") == 1 and sent(metrics, "failed") == 1
    assert "failed" in outcome.describe()


async def test_an_alert_reported_failed_in_a_burst_is_not_delivered_late(
    json_sink: JsonSink, metrics: Metrics
) -> None:
    """More alerts at once than apprise has worker threads (30 deploys breaching in one
    round, two channels each): the sends past them waited in apprise's queue, were
    reported failed at the timeout, and were delivered anyway once a thread was free,
    then again by their retry. A send reported failed is one the channel never got."""
    from apprise.apprise import get_shared_executor

    json_sink.answer_after(0.3)  # a send started with half of the 3 s left has 5× its time
    notify = notifier([(json_sink.url(), [])], metrics, timeout=3.0)
    pool = get_shared_executor()
    workers = pool._max_workers
    burst = [alert("breach", deploy_id=f"dep_{i}") for i in range(10 * workers)]

    outcomes = await asyncio.gather(*(notify.send(a, []) for a in burst))

    reported = sum(o.sent for o in outcomes)
    assert 0 < reported < len(burst)  # the burst was more than one timeout could carry
    # any send left in apprise's queue has landed once every one of its threads has taken
    # a task queued after it (the queue is first in, first out; a thread takes one at a
    # time): where a fixed 3 s sleep waited, as long on a quiet machine as on a busy one
    after = threading.Barrier(workers, timeout=30)
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(pool, after.wait) for _ in range(workers)))
    assert len(json_sink.notifications) == reported
    assert sent(metrics, "sent") == reported
    assert sent(metrics, "failed") == len(burst) - reported
    late = [c.detail for o in outcomes for c in o.channels if not c.sent]
    assert all("not started" in d for d in late), late


async def test_a_hung_channel_leaves_the_other_channels_senders_free_in_a_burst(
    hanging_server: HangingServer, json_sink: JsonSink, metrics: Metrics
) -> None:
    """Contract §4: a channel that fails is logged and counted, and never blocks the
    others. Two alerts a worker thread at once (12 deploys failing in one round) to a chat
    webhook that takes the connection and says nothing and to one that answers at once:
    the hung one's sends held every one of apprise's senders, and at the 5 s default 7 of
    12 "rollback requested" reached the healthy channel 37-52 s late, the rest after 4 s;
    in a burst like this one the healthy channel's sends were reported failed ("not
    started … all 6 of apprise's senders were busy"), logged and counted as its failures.
    Now a channel holds at most its share of the senders: the healthy one takes every
    alert, and only the hung one's sends fail."""
    from apprise.apprise import get_shared_executor

    hung = f"json://127.0.0.1:{hanging_server.port}/alerts"
    notify = notifier([(hung, []), (json_sink.url(), [])], metrics, timeout=2.0)
    burst = [alert(deploy_id=f"dep_{i}") for i in range(2 * get_shared_executor()._max_workers)]

    outcomes = await asyncio.gather(*(notify.send(a, []) for a in burst))

    healthy = [o.channels[1] for o in outcomes]
    assert [c.detail for c in healthy if not c.sent] == []
    assert len(json_sink.notifications) == len(burst)
    assert not any(o.channels[0].sent for o in outcomes)
    assert (sent(metrics, "sent"), sent(metrics, "failed")) == (len(burst), len(burst))


async def test_a_hung_smtp_server_neither_blocks_the_loop_nor_delays_a_rollback(
    hanging_server: HangingServer,
    json_sink: JsonSink,
    metrics: Metrics,
    store: SqliteStore,
    rollback_receiver: Any,
) -> None:
    """apprise runs smtplib in a worker thread; the loop keeps serving (the json sink,
    the rollback receiver and a ticker all live on it) and the send is bounded."""
    notify = notifier(
        [(hanging_server.smtp_url(), []), (json_sink.url(), [])], metrics, timeout=1.0
    )
    receiver: RollbackReceiver = await rollback_receiver("secret-1234")
    window = DeployWindow(
        id="dep_01JDTEST", environment="production", version="v2.4.1",
        previous_version="v2.4.0", commit=None, labels={}, state="watching",
        deployed_at=0.0, ends_at=600.0, created_at=0.0,
    )  # fmt: skip
    await store.create_window(window)
    intent = rollback_intent(window, "bad", [RULE], 1.0)
    await store.finish_window(window.id, "failed", None, 1.0, rollback=intent)
    delivery = RollbackDelivery(store, metrics)
    finished: list[str] = []
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def send_alert() -> Any:
        outcome = await notify.send(alert(), [])
        finished.append("alert")
        return outcome

    async def roll_back() -> Any:
        done = await delivery.deliver(
            intent, RollbackSettings(url=receiver.url, secret="secret-1234"), "production"
        )
        finished.append("rollback")
        return done

    ticker = asyncio.create_task(tick())
    try:
        outcome, done = await asyncio.gather(send_alert(), roll_back())
    finally:
        ticker.cancel()
        await delivery.aclose()

    assert done.state == "delivered"
    assert finished == ["rollback", "alert"]
    assert hanging_server.connections == 1
    assert [c.sent for c in outcome.channels] == [False, True]
    assert ticks > 10
    assert sent(metrics, "failed") == 1


async def test_a_channel_that_never_answers_is_said_to_have_given_no_answer(
    hanging_server: HangingServer, json_sink: JsonSink, metrics: Metrics
) -> None:
    """A chat webhook and a mail server that take the connection and say nothing: the
    log and the store said apprise's "A Connection error occurred sending JSON
    notification", which sends on-call to look for a server that is down; it is up and
    hung."""
    hung_json = f"json://127.0.0.1:{hanging_server.port}/alerts"
    notify = notifier(
        [(hung_json, []), (hanging_server.smtp_url(), []), (json_sink.url(), [])],
        metrics,
        timeout=1.0,
    )
    outcome = await notify.send(alert(), [])
    assert [c.sent for c in outcome.channels] == [False, False, True]
    for channel in outcome.channels[:2]:
        assert channel.detail.startswith("no answer within 1s"), channel.detail


async def test_a_channel_answering_within_alerting_timeout_takes_the_alert_once(
    json_sink: JsonSink, metrics: Metrics
) -> None:
    """`alerting.timeout` bounds an alert's send: a chat service answering in 4.5 s with
    the timeout set to 10 s failed at apprise's own 4 s read timeout ('A Connection error
    occurred'), whatever the timeout said, and its retries sent it again each time (three
    copies of one alert at a slow service). A URL's own `rto` stays as it asks."""
    json_sink.answer_after(4.5)
    own_rto = json_sink.url("short", rto="1")
    notify = notifier([(json_sink.url(), []), (own_rto, [])], metrics, timeout=10.0)

    outcome = await notify.send(alert(), [])

    assert [c.sent for c in outcome.channels] == [True, False], outcome.describe()
    assert [n.path for n in json_sink.notifications].count("/alerts") == 1
    assert sent(metrics, "sent") == 1


async def test_an_invalid_channel_url_counts_as_failed_and_is_reported(
    json_sink: JsonSink, metrics: Metrics
) -> None:
    notify = notifier([("nosuchscheme://user:pw1234@host/x", []), (json_sink.url(), [])], metrics)
    outcome = await notify.send(alert(), [])

    assert [c.sent for c in outcome.channels] == [False, True]
    errors = channel_url_errors([AlertChannel(url="nosuchscheme://user:pw1234@host/x")])
    assert len(errors) == 1 and "alerting.channels.0.url" in errors[0]
    assert "pw1234" not in errors[0]


async def test_secrets_stay_out_of_notifications_and_logs(
    json_sink: JsonSink, caplog: pytest.LogCaptureFixture, metrics: Metrics
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "tok-9f8e7d6c5b4a"
    provider_key = "nr-license-0123456789"
    channel = json_sink.url("alerts", **{"+X-Token": token})
    broken = f"json://user:{token}@127.0.0.1:1/alerts"  # refused: its error is logged
    notify = notifier([(channel, []), (broken, [])], metrics, secrets=[provider_key])

    outcome = await notify.send(
        alert(
            "provider_unreachable",
            provider="newrelic",
            detail=f"POST https://api.newrelic.com/graphql API-Key: {provider_key} refused",
            reason=f"key {provider_key} rejected",
        ),
        [],
    )

    assert outcome.sent == 1
    [note] = json_sink.notifications
    assert note.headers.get("X-Token") == token  # the channel itself still works
    assert provider_key not in note.title + note.message
    assert token not in caplog.text and provider_key not in caplog.text
    assert token not in outcome.describe()


async def test_tokens_in_a_channel_url_stay_out_of_logs_and_the_stored_outcome(
    json_sink: JsonSink, caplog: pytest.LogCaptureFixture, metrics: Metrics
) -> None:
    """apprise's privacy-masked URL keeps what it does not know for a token: a json://
    path, a `:field=` of the payload, a `+Header=` (here one that no redaction rule
    names): the log lines and the outcome stored with the alert quote none of them."""
    caplog.set_level(logging.DEBUG)
    secrets = ["pathtok-1a2b3c4d", "fieldtok-5e6f7a8b", "headtok-9c0d1e2f"]
    query = f"?:token={secrets[1]}&+Authorization=Bearer%20{secrets[2]}"
    good = f"{json_sink.url(f'hooks/{secrets[0]}')}{query}"
    json_sink.fail_always(500)
    notify = notifier([(good, [])], metrics)

    outcome = await notify.send(alert(), [])

    assert outcome.failed == 1
    assert outcome.channels[0].url.startswith("json://127.0.0.1:")
    # urllib3's request lines are kept below WARNING by `agent.logs.setup_logging`
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "urllib3.connectionpool")
    for secret in secrets:
        assert secret not in logged, secret
        assert secret not in outcome.describe(), secret


async def test_a_url_piece_is_hidden_where_it_stands_whole_not_inside_other_words(
    json_sink: JsonSink, metrics: Metrics
) -> None:
    """Every piece of a channel URL is hidden from what the outcome quotes of apprise,
    but only whole: a path `/Fail/JSON` once turned the outcome into "***ed to send ***
    POST notification"."""
    json_sink.fail_always(500)
    notify = notifier([(json_sink.url("Fail/JSON/s3cr3t-path"), [])], metrics)

    outcome = await notify.send(alert(), [])

    detail = outcome.describe()
    assert "Failed to send *** POST notification" in detail, detail  # "JSON" stands whole
    assert "s3cr3t-path" not in detail


def test_the_timeout_must_be_positive(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match=r"alerting\.timeout"):
        Notifier([], timeout=0, redact=Redactor(), metrics=metrics)


async def test_an_alert_with_no_channel_configured_says_so_not_that_tags_matched_none(
    caplog: pytest.LogCaptureFixture, metrics: Metrics
) -> None:
    """Without `alerting.channels` (the GitHub/Vercel example) every alert is only logged:
    the line names the empty section, not "no channel has any of the tags []"."""
    caplog.set_level(logging.WARNING)

    outcome = await notifier([], metrics).send(alert(), [])

    assert outcome.channels == ()
    logged = "\\n".join(r.getMessage() for r in caplog.records)
    assert "no channel is configured (alerting.channels is empty)" in logged, logged
    assert "tags" not in logged.replace("alerting.channels", ""), logged
    caplog.clear()
    await notifier([("json://127.0.0.1:9/alerts", ["oncall"])], metrics).send(alert(), ["pager"])
    assert "no channel has any of the tags ['pager']" in caplog.text, caplog.text


async def test_a_retry_counts_its_delivery_and_not_its_repeated_failure(
    json_sink: JsonSink, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    """`failed` counts an alert a channel failed, once: a retry failing again is an info
    line, not another failure; a retry that delivers is counted `sent` and says so."""
    caplog.set_level(logging.INFO, logger="postflight.alerting")
    json_sink.script(500, 500, 500)
    notify = notifier([(json_sink.url(), [])], metrics)

    assert (await notify.send(alert(), [])).failed == 1
    first = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("failed on json://127.0.0.1:" in m for m in first) == 1, first
    caplog.clear()
    assert (await notify.send(alert(), [], retry=1)).failed == 1
    assert (await notify.send(alert(), [], retry=2)).failed == 1
    assert sent(metrics, "failed") == 1 and sent(metrics, "sent") == 0
    assert (await notify.send(alert(), [], retry=3)).result == "sent"
    assert sent(metrics, "failed") == 1 and sent(metrics, "sent") == 1

    # apprise's own lines about a retry are info too; the reason is still told
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum("retry 1 failed on json://127.0.0.1:" in m and "error=500" in m for m in infos) == 1
    assert sum("delivered on retry 3 to json://127.0.0.1:" in m for m in infos) == 1, infos
    assert len(json_sink.notifications) == 1


async def test_an_alert_delivered_on_a_retry_says_it_comes_late(
    json_sink: JsonSink, smtp_sink: SmtpSink, metrics: Metrics
) -> None:
    """A retry's alert reaches on-call up to 3 minutes after the event: "rollback
    requested" read then as news, when the rollback had been delivered meanwhile. It
    says it is late and where to look now; a first attempt says nothing of the kind."""
    notify = notifier([(json_sink.url(), []), (smtp_sink.url(), [])], metrics)
    page = "https://postflight.example.com/deploys/dep_01JDTEST?view=v1.9.abc"

    await notify.send(alert(link=page), [])
    await notify.send(alert(link=page), [], retry=3)

    first, late = json_sink.notifications
    assert "late" not in first.message and first.title == late.title
    assert late.message.startswith(first.message.rstrip("\n"))
    note = (
        "Sent late, on retry 3: this channel did not take the first attempt. The deploy"
        " page shows where the deploy is now."
    )
    assert late.message.rstrip().endswith(f"_{note}_")
    mail = text_of(smtp_sink.messages[1]).rstrip()
    assert mail.endswith(note)  # the e-mail's text part: no markup around it


@pytest.mark.usefixtures("heap_set_aside")
async def test_a_channel_down_leaves_no_exceptions_for_the_collector(metrics: Metrics) -> None:
    """A refused json:// send's exceptions are freed with it, without a collection:
    urllib3 keeps each in a frame its own traceback holds (`alerting.cycles`), ~165
    objects a send, and the daemon collects rarely (`agent.windows.heap`): a channel down
    left them behind at every alert and retry."""
    notify = notifier([("json://127.0.0.1:9/alerts", [])], metrics, timeout=2.0)
    await notify.send(alert(), [])  # warm: what stays for good (apprise's pools, threads)
    gc.collect()
    gc.disable()
    try:
        before = sum(1 for o in gc.get_objects() if isinstance(o, BaseException))
        for retry in range(3):
            outcome = await notify.send(alert(), [], retry=retry)
            assert outcome.result == "failed"
        alive = sum(1 for o in gc.get_objects() if isinstance(o, BaseException)) - before
    finally:
        gc.enable()
    assert alive == 0


@pytest.mark.usefixtures("heap_set_aside")
async def test_an_e_mail_leaves_no_markdown_renderer_for_the_collector(metrics: Metrics) -> None:
    """apprise renders an e-mail's Markdown with a new Python-Markdown instance, which
    refers to itself (~127 objects a mail, sent or not); the notifier has it reuse one
    (`alerting.cycles`), so none is left for the collector, which the daemon runs rarely."""
    from markdown import Markdown  # type: ignore[import-untyped]

    down = "mailto://127.0.0.1:9?from=postflight@example.com&to=oncall@example.com"
    notify = notifier([(down, [])], metrics, timeout=2.0)
    await notify.send(alert(), [])  # warm: the one renderer kept
    gc.collect()
    gc.disable()
    try:
        before = sum(1 for o in gc.get_objects() if isinstance(o, Markdown))
        for retry in range(3):
            assert (await notify.send(alert(), [], retry=retry)).result == "failed"
        alive = sum(1 for o in gc.get_objects() if isinstance(o, Markdown)) - before
    finally:
        gc.enable()
    assert alive == 0


@pytest.mark.usefixtures("heap_set_aside")
def test_rendering_alerts_as_html_leaves_no_reference_cycle(metrics: Metrics) -> None:
    """The reused renderer's conversions leave nothing for the collector: Python-Markdown's
    raw-HTML step made a closure referring to itself each run (5 objects an e-mail or HTML
    channel's alert; 895 of a failing soak's 5,118 unreachable objects).

    The collection is the process's: what another thread's send (an earlier test's, still
    under way in this worker) leaves as it ends is collected too. Its apprise objects
    (the plugin, its results and log capture: 13 of a json:// send whose peer hung up)
    failed this test under load in a mixed run; a conversion makes none of them, so only
    Python-Markdown's and apprise.conversion's count, and such a send ends here, mid-count."""
    from apprise.common import NotifyFormat
    from apprise.conversion import convert_between

    notifier([("json://127.0.0.1:9/alerts", [])], metrics)  # installs the reuse
    bodies = [
        render(alert())[1],
        render(alert("inconclusive", reason="sentry: <b>down</b> & out"))[1],
        "<div>\n<b>raw block</b>\n</div>\n\ntext <span>inline</span> &amp;",
    ]
    for body in bodies:  # warm: what a first conversion keeps for good (caches)
        convert_between(NotifyFormat.MARKDOWN, NotifyFormat.HTML, body)  # type: ignore[no-untyped-call]  # apprise: no hints
    with _a_send_in_another_thread() as hang_up:
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)  # the unreachable kept in gc.garbage, to be told apart
        try:
            for _ in range(20):
                for body in bodies:
                    convert_between(NotifyFormat.MARKDOWN, NotifyFormat.HTML, body)  # type: ignore[no-untyped-call]  # apprise: no hints
            hang_up()  # the other thread's send ends now, its garbage among ours
            gc.collect()
            unreachable = [o for o in gc.garbage if _conversions(o)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert unreachable == []


@contextlib.contextmanager
def _a_send_in_another_thread() -> Iterator[Callable[[], None]]:
    """An apprise json:// send under way in a thread, to a peer that holds the request;
    the callable hangs up on it and waits for the send to end."""
    import apprise

    peer = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    accepted = threading.Thread(target=lambda: held.append(peer.accept()[0]), daemon=True)
    accepted.start()
    sender = apprise.Apprise()
    sender.add(f"json://127.0.0.1:{peer.getsockname()[1]}/alerts")
    sending = threading.Thread(target=sender.notify, kwargs={"body": "x"}, daemon=True)
    sending.start()
    accepted.join(10)
    del sender

    def hang_up() -> None:
        for connection in held:
            connection.close()
        sending.join(10)
        assert not sending.is_alive()

    try:
        yield hang_up
    finally:
        hang_up()
        peer.close()


def _conversions(thing: object) -> bool:
    """Whether `thing` is of a conversion: Python-Markdown's or apprise.conversion's (a
    function of theirs, as the closure that referred to itself, or an instance of one of
    their classes)."""
    module = getattr(thing, "__module__", None) if callable(thing) else None
    module = module or type(thing).__module__
    return isinstance(module, str) and (
        module.split(".")[0] == "markdown" or module.startswith("apprise.conversion")
    )


def test_the_reused_markdown_renderer_writes_what_apprise_writes(metrics: Metrics) -> None:
    """The same HTML as apprise's own conversion (a new instance each time) for every kind
    of alert body, in any order: nothing of one conversion leaks into the next."""
    from apprise.common import NotifyFormat
    from apprise.conversion import convert_between
    from apprise.conversion.format import markdown_to_html

    notifier([("json://127.0.0.1:9/alerts", [])], metrics)  # installs the reuse
    page = "https://postflight.example.com/deploys/dep_01JDTEST?view=v1.9.abc"
    answer = '<html><a href="https://evil.example/ok">x</a> [md](https://e.example) <!-- &'
    bodies = [
        render(alert())[1],
        render(alert(rules=[{**RULE, "link": page}], link=page))[1],
        render(alert(reason=f"probe-errors: {answer}", commit="`<b>x</b>"))[1],
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n```\ncode <x>\n```\nline\nbreak \\& \\< [r][1]\n\n[1]: https://r.example",
        "a reference defined only in the body before: [r][1]",
        render(alert("inconclusive", reason="sentry: could not reach Sentry"))[1],
    ]
    for body in [*bodies, *reversed(bodies)]:
        ours = convert_between(NotifyFormat.MARKDOWN, NotifyFormat.HTML, body)  # type: ignore[no-untyped-call]  # apprise: no hints
        assert ours == markdown_to_html(body)
