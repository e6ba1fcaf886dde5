"""The daemon end to end: register, probe, judge, alert, roll back — on real local parts."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.appkeys import STORE
from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget
from tests.receivers import JsonSink, RollbackReceiver, SmtpSink


def alerting(sink: JsonSink, smtp: SmtpSink | None = None) -> str:
    text = f"""
    alerting:
      channels:
        - url: {sink.url()}
          tags: [oncall]
    """
    if smtp is not None:
        text += f"""    - url: {smtp.url()}
          tags: [oncall, email]
    """
    return text


def environment(target: FlipTarget, receiver_url: str, **overrides: Any) -> str:
    values = {
        "window": "30s",
        "interval": "2s",
        "policy": "threshold",
        "failure_limit": 2,
        "dry_run": "false",
        "probes": 10,
    } | overrides
    return f"""
    production:
      base_url: {target.url}
      window: {values["window"]}
      interval: {values["interval"]}
      background_interval: 200ms
      probes_per_round: {values["probes"]}
      checks:
        - name: api-health
          type: http
          path: /api/health
          timeout: 1s
          expect: {{status: 200, json: {{status: ok}}}}
      analysis:
        policy: {values["policy"]}
        failure_limit: {values["failure_limit"]}
      rules:
        - name: probe-errors
          source: checks
          metric: error_rate
          max: 0.05
      rollback:
        url: {receiver_url}
        secret: {SECRET}
        dry_run: {values["dry_run"]}
        backoff: 100ms
      alerts:
        tags: [oncall]
    """


async def titles(sink: JsonSink, n: int) -> list[str]:
    return [a.title for a in await sink.wait_for(n, within=10)]


async def test_rules_breaching_in_one_round_page_once_per_channel(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
    smtp_sink: SmtpSink,
) -> None:
    """Contract §4, no repeats per round: three rules breach in the same round, and each
    channel gets one breach alert naming the three, where it got one per rule."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    more = "".join(
        f"        - {{name: {name}, source: checks, metric: error_rate, max: {bound}}}\n"
        for name, bound in (("probe-errors-b", 0.04), ("probe-errors-c", 0.03))
    )
    config = environment(flip_target, receiver.url).replace(
        "      rollback:\n", more + "      rollback:\n", 1
    )
    agent = await start_agent(config, alerting(json_sink, smtp_sink))
    deploy = await agent.register("production", "v2.4.1", previous_version="v2.4.0")
    flip_target.bad = True
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "rolled_back", final["state"]
    assert [r["outcome"] for r in final["verdict"]["rules"]] == ["fail"] * 3

    await json_sink.wait_for(3, within=10)  # breach, rollback requested, delivered
    await smtp_sink.wait_for(3, within=10)
    await asyncio.sleep(0.5)  # a late page per rule would have come by now
    breached = "[postflight] production v2.4.1: 3 rules breached: probe-errors, probe-errors-b"
    chat = [n.title for n in json_sink.notifications if "breached" in n.title]
    mail = [str(m["Subject"]) for m in smtp_sink.messages if "breached" in str(m["Subject"])]
    assert chat == [f"{breached}, probe-errors-c"] and mail == chat, (chat, mail)


async def test_forty_percent_5xx_is_rolled_back_within_three_rounds(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
    smtp_sink: SmtpSink,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(flip_target, receiver.url), alerting(json_sink, smtp_sink)
    )
    deploy = await agent.register("production", "v2.4.1", previous_version="v2.4.0")
    flip_target.bad = True  # the new version answers 40% 5xx
    final = await agent.settled(deploy["id"], within=20)

    assert final["state"] == "rolled_back"
    assert final["rounds"] <= 3
    assert final["verdict"]["outcome"] == "fail"
    assert final["verdict"]["reason"].startswith("probe-errors:")
    rule = final["verdict"]["rules"][0]
    assert rule["outcome"] == "fail" and rule["observed"] > 0.05
    assert final["rollback"]["state"] == "delivered"

    assert len(receiver.attempts) == 1
    attempt = receiver.attempts[0]
    assert attempt.signature_ok and attempt.accepted
    assert attempt.idempotency_key == deploy["id"]
    body = json.loads(attempt.body)
    assert body["event"] == "rollback"
    assert body["deploy"]["version"] == "v2.4.1"
    assert body["breaches"][0]["rule"] == "probe-errors"
    # the webhook's deploy is the API's: the same instants, written the same way
    assert body["deploy"]["deployed_at"] == final["deployed_at"] == deploy["deployed_at"]
    assert body["requested_at"] == final["rollback"]["requested_at"]

    seen = await titles(json_sink, 3)
    assert all(t.startswith("[postflight] production v2.4.1:") for t in seen)
    joined = " | ".join(seen)
    assert "breach" in joined and "rollback requested" in joined
    mails = await smtp_sink.wait_for(1, within=10)
    assert mails
    assert (
        agent.metric("postflight_rollbacks_total", environment="production", result="delivered")
        == 1
    )
    assert (
        agent.metric("postflight_windows_total", environment="production", outcome="rolled_back")
        == 1
    )
    # one evaluation per round: the breaching round short of failure_limit 2 is no `pass`
    labels = {"environment": "production", "rule": "probe-errors"}
    evaluations = {
        outcome: agent.metric("postflight_rule_evaluations_total", **labels, outcome=outcome)
        for outcome in ("pass", "breaching", "fail")
    }
    assert evaluations["fail"] == 1 and evaluations["breaching"] >= 1, evaluations
    assert sum(evaluations.values()) == final["rounds"], evaluations


async def test_healthy_deploy_passes_with_a_success_alert_and_no_rollback(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(flip_target, receiver.url, window="3s", interval="1s"), alerting(json_sink)
    )
    deploy = await agent.register("production", "v2.4.2")
    final = await agent.settled(deploy["id"], within=15)
    assert final["state"] == "passed"
    assert final["verdict"]["outcome"] == "pass"
    assert final["rounds"] >= 3
    assert final["rollback"] is None
    seen = await titles(json_sink, 1)
    assert any("passed" in t for t in seen)
    await asyncio.sleep(0.3)
    assert receiver.attempts == []
    assert (
        agent.metric(
            "postflight_check_runs_total",
            environment="production",
            check="api-health",
            result="pass",
        )
        >= 30
    )


async def test_dry_run_fails_the_window_and_alerts_but_never_calls_the_webhook(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(flip_target, receiver.url, interval="1s", dry_run="true"),
        alerting(json_sink),
    )
    flip_target.bad = True
    deploy = await agent.register("production", "v9")
    final = await agent.settled(deploy["id"], within=15)
    assert final["state"] == "failed"
    assert final["rollback"]["state"] == "skipped"
    seen = await titles(json_sink, 2)
    assert any("dry run" in t.lower() or "skipped" in t.lower() for t in seen), seen
    await asyncio.sleep(0.3)
    assert receiver.attempts == []


async def test_cancelled_window_fires_nothing_more(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(flip_target, receiver.url, window="3s", interval="500ms"),
        alerting(json_sink),
    )
    deploy = await agent.register("production", "v3")
    await agent.wait_until(deploy["id"], lambda d: d["rounds"] >= 1, within=5)
    cancelled = await agent.cancel(deploy["id"])
    assert cancelled["state"] == "cancelled"
    # past the window's end and two more rounds' slots (1 s), as a fixed 3.5 s from the
    # cancel at round 1 was at the least
    ends = datetime.fromisoformat(deploy["ends_at"]).timestamp()
    await asyncio.sleep(max(0.0, ends - time.time()) + 1.0)
    final = await agent.get(deploy["id"])
    assert final["state"] == "cancelled"
    assert not any("passed" in n.title for n in json_sink.notifications)
    assert receiver.attempts == []


async def test_a_new_deploy_supersedes_the_active_window(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(flip_target, receiver.url, window="2s", interval="500ms"),
        alerting(json_sink),
    )
    first = await agent.register("production", "v1")
    await agent.wait_until(first["id"], lambda d: d["rounds"] >= 1, within=5)
    second = await agent.register("production", "v2")
    old = await agent.get(first["id"])
    assert old["state"] == "superseded"
    final = await agent.settled(second["id"], within=10)
    assert final["state"] == "passed"
    old = await agent.get(first["id"])
    assert old["state"] == "superseded"
    assert not any("v1:" in n.title for n in json_sink.notifications)


async def test_a_superseded_window_that_was_breaching_fires_nothing_more(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    """Contract §2: "the old window ends in state `superseded` and fires nothing more",
    seen where it matters: v1 breaches at its first round, short of its failure limit,
    and v2 supersedes it on the same failing service. The webhook gets v2's rollback
    only, and no alert about v1 arrives after it was superseded (its breach, sent before,
    is all there is: no verdict, no rollback requested, no resolve)."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(flip_target, receiver.url, interval="1s", failure_limit=4),
        alerting(json_sink),
    )
    flip_target.bad = True
    first = await agent.register("production", "v1")
    breach = [a.title for a in await json_sink.wait_for(1, within=10)]
    assert breach == ["[postflight] production v1: probe-errors breached"], breach
    second = await agent.register("production", "v2")
    old = await agent.get(first["id"])
    assert old["state"] == "superseded" and old["verdict"] is None, old

    final = await agent.settled(second["id"], within=30)
    assert final["state"] == "rolled_back", final
    await asyncio.sleep(2.5)  # two more of v1's rounds, had it gone on
    assert {a.idempotency_key for a in receiver.attempts} == {second["id"]}
    assert all(second["id"] in a.body and first["id"] not in a.body for a in receiver.attempts)
    assert [n.title for n in json_sink.notifications if " v1:" in n.title] == breach
    assert (await agent.get(first["id"]))["state"] == "superseded"
    assert (
        agent.metric("postflight_rollbacks_total", environment="production", result="delivered")
        == 1
    )


async def test_alerts_lost_to_a_sink_outage_arrive_once_and_never_hold_the_rollback(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    """The audit's case: the json:// sink is down while the breach and "rollback
    requested" go out. The webhook gets its rollback meanwhile; the sink, back up, gets
    each alert once, from the background retries (sub-second backoff here), in the order
    raised: a later alert's catch-up refused too left the earlier one its retry, and a
    retry pass sends the earlier one's first."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    json_sink.fail_always(503)
    agent = await start_agent(
        environment(flip_target, receiver.url),
        alerting(json_sink),
        alert_retry_delays=(1.5,) * 60,
    )
    deploy = await agent.register("production", "v2.4.1", previous_version="v2.4.0")
    flip_target.bad = True
    final = await agent.settled(deploy["id"], within=30)

    assert final["state"] == "rolled_back" and len(receiver.attempts) == 1
    store = agent.app[STORE]
    # back once every alert was refused and none is being sent: not between a refused
    # catch-up and the later alert's send (a flap there has the later one arrive first)
    for _ in range(300):
        owed = await store.alert_retries_of(deploy["id"])
        at_rest = len(owed) >= 3 and not any(o.taken for o in owed)
        if at_rest and min(o.retry_at for o in owed) > time.time() + 0.5:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the alerts never all owed at rest: {owed}")
    assert json_sink.notifications == []  # every alert so far failed: none held it up
    json_sink.come_back()
    for _ in range(600):
        if await store.next_alert_retry() is None:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("alerts still owed after 60 s")
    seen = [n.title for n in json_sink.notifications]
    assert any("breach" in t for t in seen) and any("rollback requested" in t for t in seen)
    assert sorted(seen) == sorted(set(seen)), seen  # each alert once
    raised = ["breach", "rollback requested", "rollback delivered"]
    order = [next(i for i, word in enumerate(raised) if word in t) for t in seen]
    assert order == sorted(order) and set(order) == {0, 1, 2}, seen  # in the order raised
    assert agent.metric("postflight_alerts_total", result="sent") == len(seen)


async def test_a_manual_rollback_sends_the_reason_as_given_and_its_alert_names_who_asked(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    """Contract §7: `POST /v1/deploys/{id}/rollback {"reason": ...}`. The pipeline's webhook
    and the verdict carry the reason as the person gave it (they read "manual rollback by
    api_tokens[0]: ..."); the alert and the log say which token asked."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(environment(flip_target, receiver.url), alerting(json_sink))
    deploy = await agent.register("production", "v2.4.1", previous_version="v2.4.0")
    async with agent.http.post(
        f"{agent.url}/v1/deploys/{deploy['id']}/rollback",
        json={"reason": "checkout broken"},
        headers=agent.headers,
    ) as r:
        assert r.status == 202, await r.text()
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "rolled_back"
    assert final["verdict"]["reason"] == "checkout broken"
    assert len(receiver.attempts) == 1 and receiver.attempts[0].signature_ok
    body = json.loads(receiver.attempts[0].body)
    assert body["reason"] == "checkout broken" and body["breaches"] == []
    seen = await json_sink.wait_for(2, within=10)
    requested = [a for a in seen if "rollback requested" in a.title]
    assert requested, [a.title for a in seen]
    # the message is Markdown: the token's brackets are escaped
    why = "manual rollback by api_tokens[0\\]: checkout broken"  # `]:` could define a link
    assert why in requested[0].message, requested[0].message
    # asked for by hand, of a window still watching: not headed "Deploy failed"
    assert requested[0].message.startswith("**Rollback requested by hand** from the pipeline")


async def test_a_manual_rollback_reason_is_1_to_1000_printable_characters(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
) -> None:
    """The README's `{"reason": …}` "(1–1000 printable characters: no control or
    invisible ones, not only spaces, else `422`)", through `run`: characters, not bytes
    (1000 two-byte ones are taken and reach the webhook as given), one more or a reason of
    spaces a 422 naming it, and nothing sent for either."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(environment(flip_target, receiver.url))
    deploy = await agent.register("production", "v2.4.1", previous_version="v2.4.0")
    url = f"{agent.url}/v1/deploys/{deploy['id']}/rollback"
    for refused in ("é" * 1001, "   ", "line\nbreak"):
        async with agent.http.post(url, json={"reason": refused}, headers=agent.headers) as r:
            problem = await r.json(content_type=None)
            assert r.status == 422, problem
            assert [e["loc"] for e in problem["errors"]] == [["reason"]], problem
    async with agent.http.post(url, json={"reason": "é" * 1000}, headers=agent.headers) as r:
        assert r.status == 202, await r.text()
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "rolled_back"
    assert len(receiver.attempts) == 1
    assert json.loads(receiver.attempts[0].body)["reason"] == "é" * 1000


async def test_postflight_rollback_exits_0_accepted_1_refused_2_unknown(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
) -> None:
    """The README: `postflight rollback ID --reason TEXT` exits 0 accepted, 1 refused (the
    deploy already has one, or was cancelled or superseded), 2 usage or connection error.
    The CLI as a pipeline runs it, against the daemon's app; the webhook counts one."""
    from tests.e2e.conftest import TOKEN

    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(environment(flip_target, receiver.url, window="1m"))
    superseded = await agent.register("production", "v1")
    cancelled = await agent.register("production", "v2")
    await agent.cancel(cancelled["id"])
    live = await agent.register("production", "v3")

    async def rollback(deploy_id: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "agent", "rollback", deploy_id, "--reason", "by hand"),
            *("--url", agent.url, "--token", TOKEN),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    code, out = await rollback(live["id"])
    assert code == 0, out
    code, out = await rollback(live["id"])
    refused = f"deploy {live['id']} already has a rollback (HTTP 409)"
    said = f"postflight rollback: error: {refused} (exit 1)"
    assert (code, out.strip()) == (1, said)
    for deploy, state in ((superseded, "superseded"), (cancelled, "cancelled")):
        code, out = await rollback(deploy["id"])
        assert code == 1, out
        assert f"deploy {deploy['id']} was {state}: nothing to roll back (HTTP 409)" in out, out
    code, out = await rollback("dep_none")
    assert code == 2 and "no deploy 'dep_none': a deploy id is dep_ and 26" in out, out
    assert out.rstrip().endswith("(HTTP 404) (exit 2)"), out
    final = await agent.settled(live["id"], within=20)
    assert final["state"] == "rolled_back" and len(receiver.attempts) == 1


def readme_register_command() -> list[str]:
    """The words of the `sh` block of the README's "How a pipeline uses it"."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## How a pipeline uses it\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return shlex.split(block.group(1).replace("\\\n", " "))


async def test_the_readmes_register_command_runs_as_written_and_exits_by_the_verdict(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
) -> None:
    """ "How a pipeline uses it": its `postflight register … --wait --timeout 30m`, word for
    word but for the agent's address (`--url`), with `$POSTFLIGHT_TOKEN` and `$GIT_SHA` set
    as a pipeline sets them: it registers, prints the page, follows the window and exits 0
    on the pass; the window carries the README's previous version, commit and label."""
    from tests.e2e.conftest import TOKEN

    words = readme_register_command()
    words[words.index("--url") + 1] = "{agent}"  # the README's host is no one's here
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(environment(flip_target, receiver.url, window="3s", interval="1s"))
    args = [w.replace("{agent}", agent.url) for w in words[2:]]
    env = dict(
        os.environ, POSTFLIGHT_TOKEN=TOKEN, GIT_SHA="9fceb02d0ae598e95dc970b74767f19372d61af8"
    )
    # the README's "$POSTFLIGHT_TOKEN" and "$GIT_SHA", expanded as the shell would
    args = [env.get(w[1:], w) if w.startswith("$") else w for w in args]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "register",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    said = out.decode()
    assert proc.returncode == 0, said
    assert re.search(r"page: http://127\.0\.0\.1:\d+/deploys/dep_\w+\?view=", said), said
    [deploy_id] = set(re.findall(r"dep_\w+", said))
    final = await agent.get(deploy_id)
    assert final["state"] == "passed", final
    assert (final["version"], final["previous_version"]) == ("v2.4.1", "v2.4.0")
    assert final["commit"] == env["GIT_SHA"] and final["labels"] == {"pipeline": "run-1234"}


async def test_a_breach_short_of_failure_limit_is_shown_as_the_readme_says_by_wait_and_status(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
) -> None:
    """ "How a pipeline uses it": a threshold-policy rule past its bound for fewer rounds
    than `failure_limit` (`pass` in the API's progress) is shown `! breach probe-errors 100%
    (max 5%, N of M rounds)` by `register --wait`, as by `status ID`, from the daemon's
    own progress (the renderer's tests build theirs by hand); a `--timeout` that runs out
    while it still watches exits 3."""
    from tests.cli_process import awaited_cli
    from tests.e2e.conftest import TOKEN

    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(flip_target, receiver.url, window="2m", interval="500ms", failure_limit=50)
    )
    flip_target.bad = True
    auth = ("--url", agent.url, "--token", TOKEN)
    code, said = await awaited_cli(
        "register", "--env", "production", "--version", "v2", "--wait", "--timeout", "6s", *auth
    )
    assert code == 3, said
    assert re.search(r"! breach probe-errors [\d.]+% \(max 5%, \d+ of 50 rounds\)", said), said
    [deploy_id] = set(re.findall(r"dep_\w+", said))
    code, shown = await awaited_cli("status", deploy_id, *auth)
    assert code == 0, shown
    assert re.search(r"probe-errors +! breach .* max 5%, \d+ of 50 rounds", shown), shown
    assert (await agent.get(deploy_id))["state"] == "watching"
    await agent.cancel(deploy_id)
