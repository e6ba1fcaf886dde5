"""A part of the real daemon that raises during a round, on every try (a bug, not an
outage): the window ends `inconclusive` naming the part and the exception, pages on-call
once, is never rolled back, logs one ERROR with its traceback, and `register --wait`
exits 3 at once. Before, the watcher logged the error, claimed the window again and met
the same exception again, for ever: no verdict, no alert, `--wait` held to its timeout.

The bug comes from a provider plugin, installed as pip would: an answer the judge cannot
read (`judge`), or one the store cannot write (`store`). A provider whose fetch raises
(`raise`) is a provider failing soft instead: its rule inconclusive, its one alert naming
the exception, the window going on to its end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.appkeys import STORE
from alerting import notifier
from tests.e2e.conftest import SECRET as E2E_SECRET
from tests.e2e.conftest import AgentFactory, failing_production
from tests.e2e.crash import TOKEN, free_port
from tests.e2e.plugin_agent import records, registered, registered_each, start
from tests.plugin_site import install_distribution
from tests.receivers import (
    JsonNotification,
    JsonSink,
    RollbackAttempt,
    RollbackReceiver,
    SmtpSink,
    text_of,
)

pytestmark = pytest.mark.e2e

SECRET = "round-bug-rollback-secret"
API_KEY = "round-bug-api-key-4242"

PLUGIN = '''
"""A provider whose answers are buggy, by `mode` (the baseline, of the old release, is
fine): `text` and `nan`, a value that is no number; `bytes` and `dict`, an error that is
no text; `numpy`, figures the judge reads but JSON does not (numpy's); `sizes_*`, the
values' `period_sizes` in numpy's counts (`sizes_numpy`), or not counts (`sizes_float`,
`sizes_negative`), or counts that do not add up to the values (`sizes_sum`); `raise`, a fetch
that raises, naming its key; `by-environment`, each environment's answers those of the
mode it is named after (one agent for many); `judge`, a judge that raises on every round,
and `store`, a round's write that raises (a summary that is no JSON), each patched in as
the plugin is loaded (a bug of the agent's own, in the daemon as it runs).
And a check that raises in every run (its own bug, not the target's)."""

import dataclasses
from typing import ClassVar, Literal

from pydantic import BaseModel, SecretStr

from agent.analysis.types import Observation
from checks.base import Check, CheckConfig


class BuggySettings(BaseModel):
    mode: str
    api_key: SecretStr


class BuggyProvider:
    name = "buggy"
    config_model: ClassVar[type[BaseModel]] = BuggySettings

    def __init__(self, config, *, metrics, redact=None):
        self.config = config
        if config.mode == "judge":
            from agent.analysis.judge import Judge

            def advance(self, *args, **kwargs):
                raise TypeError("must be real number, not str")

            Judge.advance = advance
        if config.mode == "store":
            from agent.store import sql, sqlite

            rows = sql.round_rows

            def round_rows(record, verdict, fence):
                summary = {**record.summary, "raw": b"connection reset"}
                return rows(dataclasses.replace(record, summary=summary), verdict, fence)

            sql.round_rows = sqlite.round_rows = round_rows

    async def fetch(self, rule, scope, period, release):
        if release != scope.version:
            return Observation(value=0.01)
        mode = scope.environment if self.config.mode == "by-environment" else self.config.mode
        if mode in ("text", "judge"):
            return Observation(value="n/a")
        if mode == "nan":
            return Observation(value=float("nan"))
        if mode == "store":
            return Observation(value=0.01)
        if mode == "bytes":
            return Observation(value=None, error=b"connection reset")
        if mode == "dict":
            return Observation(value=None, error={"code": 503, "detail": "overloaded"})
        if mode == "numpy":
            import numpy as np

            return Observation(
                value=np.float64(0.01),
                count=np.int64(1),
                total=np.int64(100),
                seconds=np.float32(0.5),
                values=np.array([0.01]),
            )
        if mode.startswith("sizes_"):
            import numpy as np

            sizes = {
                "sizes_numpy": np.array([1, 2]),
                "sizes_float": (1.0, 2.0),
                "sizes_negative": (4, -1),
                "sizes_sum": (1, 1),
            }[mode]
            return Observation(value=0.02, values=(0.01, 0.02, 0.03), period_sizes=sizes)
        raise RuntimeError(f"fetch exploded (key {self.config.api_key.get_secret_value()})")

    async def mark(self, scope, event):
        return None

    def link(self, rule, scope, period, *, release=None):
        return None

    async def aclose(self):
        return None


class CrashyConfig(CheckConfig):
    type: Literal["crashy"] = "crashy"
    secret: SecretStr


class CrashyCheck(Check):
    """Raises in every run, naming its secret."""

    type = "crashy"
    Config = CrashyConfig

    async def run(self, ctx):
        raise RuntimeError(f"boom (secret {self.config.secret.get_secret_value()})")
'''


def install_plugin(site: Path) -> None:
    install_distribution(
        site,
        "postflight-buggy",
        "[postflight.providers]\nbuggy = buggy_provider:BuggyProvider\n"
        "[postflight.checks]\ncrashy = buggy_provider:CrashyCheck\n",
    )
    (site / "buggy_provider.py").write_text(PLUGIN)


# An environment's checks and rules: mode `check`'s (or an environment named so), the
# crashy check judged by its own rule; any other's, the buggy provider's rule.
CRASHY_CHECK = f"{{name: crashy, type: crashy, secret: {API_KEY}}}"
HEALTH_CHECK = "{name: health, type: http, path: /health, timeout: 200ms}"
CHECK_RULE = "{name: probe-errors, source: checks, metric: error_rate, max: 0.5}"
BUGGY_RULE = "{name: bug-rate, source: buggy, metric: error_rate, max: 0.5}"


def config(
    tmp_path: Path,
    port: int,
    mode: str,
    sink: str,
    receiver: str,
    window: str = "30s",
    mail: str | None = None,
    environments: Sequence[str] = ("production",),
) -> Path:
    path = tmp_path / "postflight.yaml"
    path.write_text(
        f"server:\n  listen: 127.0.0.1:{port}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: sqlite:///{tmp_path / 'postflight.db'}\n"
        f"alerting:\n  channels:\n    - {{url: '{sink}', tags: [oncall]}}\n"
        + (f"    - {{url: '{mail}', tags: [oncall]}}\n" if mail else "")
        + f"providers:\n  buggy: {{mode: {mode}, api_key: {API_KEY}}}\n"
        "environments:\n"
        + "".join(
            f"  {name}:\n"
            f"    base_url: http://127.0.0.1:{free_port()}\n"
            f"    window: {window}\n"
            "    interval: 500ms\n"
            "    background_interval: 200ms\n"
            f"    checks: [{CRASHY_CHECK if 'check' in (mode, name) else HEALTH_CHECK}]\n"
            "    analysis: {policy: threshold, failure_limit: 1}\n"
            f"    rules: [{CHECK_RULE if 'check' in (mode, name) else BUGGY_RULE}]\n"
            "    alerts: {tags: [oncall]}\n"
            f"    rollback: {{url: '{receiver}', secret: {SECRET}}}\n"
            for name in environments
        )
    )
    return path


async def watched(
    tmp_path: Path, mode: str
) -> tuple[int, str, dict[str, Any], JsonSink, list[Any], Path, SmtpSink]:
    """Register v2 with `--wait` on an agent whose provider has the bug `mode`, then stop
    the agent: the exit code and output, the deploy as the API shows it, the sink, the
    rollback requests, the agent's log and the mail channel's sink."""
    site = tmp_path / "site"
    install_plugin(site)
    sink, receiver, mail = JsonSink(), RollbackReceiver(SECRET), SmtpSink()
    await sink.start()
    await receiver.start()
    await mail.start()
    port = free_port()
    log = tmp_path / "agent.log"
    made = config(tmp_path, port, mode, sink.url(), receiver.url, mail=mail.url())
    agent = start(made, log, site)
    try:
        url = f"http://127.0.0.1:{port}"
        code, said, deploy_id = await registered(url, "--wait", "--timeout", "20s")
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
            http.get(f"{url}/v1/deploys/{deploy_id}") as answer,
        ):
            deploy = await answer.json()
        with contextlib.suppress(TimeoutError):  # none (the old code's): said below
            await sink.wait_for(1)
            await mail.wait_for(1)
    finally:
        agent.send_signal(signal.SIGTERM)
        # awaited in a thread: the sinks and the receiver are this loop's, and alerts in
        # flight at the stop are still answered (a blocking wait held them: the mail
        # channel's send timed out, 5 s of the stop's drain)
        await asyncio.to_thread(agent.wait, 30)
        await sink.stop()
        await receiver.stop()
        await mail.stop()
    return code, said, deploy, sink, receiver.attempts, log, mail


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("mode", "part", "raised"),
    [
        ("judge", "the judge", "TypeError: must be real number, not str at round 1"),
        ("store", "the store", "TypeError: Object of type bytes is not JSON serializable"),
    ],
    ids=["the judge raises", "the round's store raises"],
)
async def test_a_part_that_raises_on_every_try_ends_the_window_inconclusive_naming_it(
    tmp_path: Path, mode: str, part: str, raised: str
) -> None:
    code, said, deploy, sink, rollbacks, log, mail = await watched(tmp_path, mode)

    assert code == 3, said
    assert deploy["state"] == "inconclusive", deploy
    reason = deploy["verdict"]["reason"]
    assert reason.startswith(f"{part} raised {raised}"), reason
    assert "never rolled back" in reason, reason
    assert f"{part} raised" in said, said
    assert [n.title for n in sink.notifications] == [sink.notifications[0].title], (
        sink.notifications
    )
    assert raised in sink.notifications[0].message, sink.notifications[0].message
    # on-call tells a bug from a deploy short of evidence at a glance, in every channel
    title = "[postflight] production v2: inconclusive, a bug in the agent ended the window"
    assert sink.notifications[0].title == title, sink.notifications[0].title
    assert sink.notifications[0].message.startswith(
        "**Inconclusive: a bug in the agent ended the window.**"
    ), sink.notifications[0].message
    assert "not every rule had the data" not in sink.notifications[0].message
    [mailed] = mail.messages
    assert mailed["Subject"] == title, mailed["Subject"]
    assert "a bug in the agent ended the window" in text_of(mailed), text_of(mailed)
    assert raised in text_of(mailed), text_of(mailed)
    assert rollbacks == []
    logged = records(log)
    traced = [r for r in logged if r["level"] == "error" and r.get("exc")]
    assert len(traced) == 1, traced  # the bug's traceback once, not at every retry
    assert "Traceback" in traced[0]["exc"] and "TypeError" in traced[0]["exc"], traced
    ended = [r for r in logged if r["msg"].startswith("window inconclusive:")]
    assert [r["level"] for r in ended] == ["error"], ended
    retried = [r for r in logged if "failed again as before" in r["msg"]]
    # the judge is pure: what it raised on it raises on again, so it is not tried again;
    # another part is, as a store's outage would be, until it failed alike three times
    assert len(retried) == (0 if mode == "judge" else 1), retried


ANSWERED_NO_NUMBER = {
    "text": "its value 'n/a' (str) is not a number",
    "nan": "its value nan is not a finite",
    "bytes": "its error b'connection reset' (bytes) is not text",
    "dict": "its error {'code': 503, 'detail': 'overloaded'} (dict) is not text",
    "sizes_float": "its period_sizes[0] 1.0 (float) is not a count",
    "sizes_negative": "its period_sizes[1] -1 (int) is not a count",
    "sizes_sum": "its period_sizes (1, 1) (tuple) count 2 values, not its 3",
}
"""The provider's answers the judge cannot read, by mode, and the words that say why."""

ANSWERED_NUMPY = ("numpy", "sizes_numpy")
"""The provider's answers in numpy's figures, which the judge reads but JSON does not."""


SHARED_WINDOW = "8s"
"""A shared run's windows: 3 s each where each had an agent of its own. The CLIs that
register them start at once, which holds the agent a while just as the windows begin: at
load 18 (two runs of the module at once) every window of 3 s ended after round 1 (the
agent took no round for 3 s), and at load 15 (beside the check plugins' shared run, on
two workers) one of 5 s did (6 s)."""


@dataclass
class Watch:
    """One environment's deploy in `answers_by_environment`'s run."""

    code: int
    said: str
    """`register --wait`'s exit code and output."""
    deploy: dict[str, Any]
    """The deploy as the API shows it."""
    notifications: list[JsonNotification]
    """The sink's alerts about this environment's deploy."""
    logged: list[dict[str, Any]]
    """The agent's log records about this environment (their `environment` field)."""


@dataclass
class AnswersRun:
    """One agent whose provider answers each environment as the mode it is named after."""

    watches: dict[str, Watch]
    rollbacks: list[RollbackAttempt]
    """Every rollback request of the run, whatever its environment."""
    notifications: list[JsonNotification]
    """Every alert of the run."""
    logged: list[dict[str, Any]]
    """Every record of the agent's log."""
    text: str
    """The agent's log as written."""


async def watched_by_environment(tmp_path: Path, modes: Sequence[str]) -> AnswersRun:
    """`watched` for many modes at once: one agent, an environment named after each mode
    (`by-environment`), v2 registered on each with `--wait` at once, then the agent stopped.
    Each test ran an agent of its own, one after another: an agent's start, window and
    stop each (54 s for the 9 of `answers_run` at load 13, 14 s as one run of 3 s windows)."""
    site = tmp_path / "site"
    install_plugin(site)
    sink, receiver = JsonSink(), RollbackReceiver(SECRET)
    await sink.start()
    await receiver.start()
    port = free_port()
    log = tmp_path / "agent.log"
    made = config(
        tmp_path,
        port,
        "by-environment",
        sink.url(),
        receiver.url,
        SHARED_WINDOW,
        environments=modes,
    )
    agent = start(made, log, site)
    try:
        url = f"http://127.0.0.1:{port}"
        ends = await registered_each(url, modes, "--wait", "--timeout", "20s")
        with contextlib.suppress(TimeoutError):  # what came is asserted by each test
            await sink.wait_for(len(modes))
    finally:
        agent.send_signal(signal.SIGTERM)
        await asyncio.to_thread(agent.wait, 30)  # in a thread: see `watched`
        await sink.stop()
        await receiver.stop()
    logged = records(log)
    watches = {
        mode: Watch(
            code,
            said,
            deploy,
            [n for n in sink.notifications if n.title.startswith(f"[postflight] {mode} v2:")],
            [r for r in logged if r.get("environment") == mode],
        )
        for mode, (code, said, deploy) in ends.items()
    }
    return AnswersRun(watches, receiver.attempts, sink.notifications, logged, log.read_text())


RAISING = ("raise", "check")
"""The modes of a fetch that raises and of a check that raises: the only environments of
`answers_run` whose records may carry an exception (`unraised`)."""


@pytest.fixture(scope="module")
def answers_run(tmp_path_factory: pytest.TempPathFactory) -> AnswersRun:
    """The run of every mode of `ANSWERED_NO_NUMBER`, `ANSWERED_NUMPY` and `RAISING`,
    shared by their tests (one worker runs them all: `ONE_ANSWERS_RUN`). The raising modes
    had a run of their own, apart from the answers whose tests find no exception in the
    log: an agent's start, an 8 s window and a stop more (10 s of the module's 27 s alone);
    those tests now leave out the records about `RAISING`'s environments (`unraised`)."""
    modes = [*ANSWERED_NO_NUMBER, *ANSWERED_NUMPY, *RAISING]
    return asyncio.run(watched_by_environment(tmp_path_factory.mktemp("answers"), modes))


def unraised(run: AnswersRun) -> list[dict[str, Any]]:
    """The run's log records with an exception, but for those about `RAISING`'s
    environments (a record naming no environment is kept)."""
    return [r for r in run.logged if r.get("exc") and r.get("environment") not in RAISING]


ONE_ANSWERS_RUN = pytest.mark.xdist_group("round-bug-answers")
"""The tests of `answers_run` on one worker, which runs it once (`--dist loadgroup`)."""


@ONE_ANSWERS_RUN
@pytest.mark.timeout(90)
@pytest.mark.parametrize(("mode", "said"), ANSWERED_NO_NUMBER.items())
def test_a_provider_answering_no_number_makes_its_rule_inconclusive_not_the_window_a_bug(
    answers_run: AnswersRun, mode: str, said: str
) -> None:
    """The judge raised on it (or, NaN, took it for no data, unsaid), and the whole window
    ended at round 1 as a bug of "the judge"; an error that is no text made the round's
    store write raise, three times, and the window ended as a bug of "the store": the
    answer is the provider's fault, told as an answer that cannot be read is."""
    watch = answers_run.watches[mode]
    code, out, deploy = watch.code, watch.said, watch.deploy

    assert code == 3, out
    assert deploy["state"] == "inconclusive", deploy
    assert deploy["rounds"] > 1, deploy  # went on to its end
    reason = deploy["verdict"]["reason"]
    assert "a bug in the agent" not in reason, reason
    provider, end = watch.notifications  # the provider's one alert of the window, and the end
    assert provider.title.endswith("provider buggy answered, but not usably"), provider.title
    # the alert's Markdown escapes: a `]` before `(`, `[` or `:` (it could close a link)
    marked = re.sub(r"\](?=[(\[:])", r"\\]", said)
    assert marked in provider.message, provider.message
    assert end.title.endswith("inconclusive, not enough data or evidence to pass"), end.title
    assert answers_run.rollbacks == []
    logged = answers_run.logged
    assert not unraised(answers_run), logged
    warned = [r for r in watch.logged if r["msg"].startswith("provider buggy answered")]
    assert len(warned) == 1 and said in warned[0]["msg"], warned
    assert not [r for r in logged if "watching the window failed" in r["msg"]]


@ONE_ANSWERS_RUN
@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ANSWERED_NUMPY)
def test_a_provider_answering_numpy_figures_is_judged_and_stored(
    answers_run: AnswersRun, mode: str
) -> None:
    """numpy's numbers are numbers to the judge, but not to JSON: the round's store write
    raised on them (`Object of type int64 is not JSON serializable`), three times, and the
    window ended at round 1 as a bug of the store. They are stored as Python's; so too
    `period_sizes` in a numpy array (its truth, asked by the store write, raised)."""
    watch = answers_run.watches[mode]
    code, out, deploy = watch.code, watch.said, watch.deploy

    assert deploy["rounds"] > 1, (code, out, deploy)  # went on to its end
    assert deploy["state"] in ("passed", "failed", "inconclusive"), deploy
    assert "a bug in the agent" not in deploy["verdict"]["reason"], deploy
    notifications = watch.notifications
    assert not [n for n in notifications if "provider buggy" in n.title], notifications
    logged = answers_run.logged
    assert not unraised(answers_run), logged
    assert not [r for r in logged if "watching the window failed" in r["msg"]]


@ONE_ANSWERS_RUN
@pytest.mark.timeout(90)
def test_a_provider_whose_fetch_raises_fails_soft_naming_the_exception(
    answers_run: AnswersRun,
) -> None:
    """Before, the exception went out of the round: the watch ended, and the watcher met
    it again at each claim (then, with the watcher's bug rule, ended the window at round 1
    as a bug of "the window's watch", with no provider alert)."""
    watch = answers_run.watches["raise"]
    code, said, deploy = watch.code, watch.said, watch.deploy

    assert code == 3, said
    assert deploy["state"] == "inconclusive", deploy
    assert deploy["rounds"] > 1, deploy  # went on to its end
    assert "raised RuntimeError: fetch exploded (key ***)" in deploy["verdict"]["reason"], deploy
    provider, end = watch.notifications  # the provider's one alert of the window, and the end
    assert "provider buggy" in provider.title, provider.title
    assert "raised RuntimeError: fetch exploded (key " in provider.message, provider.message
    assert "inconclusive" in end.title, end.title
    assert answers_run.rollbacks == []
    assert API_KEY not in answers_run.text
    assert all(API_KEY not in n.message for n in answers_run.notifications)
    assert API_KEY not in json.dumps(deploy)
    logged = answers_run.logged
    traced = [r for r in logged if r["level"] == "error" and r.get("exc")]
    assert len(traced) == 1 and "RuntimeError" in traced[0]["exc"], traced
    assert not [r for r in logged if "watching the window failed" in r["msg"]]


@ONE_ANSWERS_RUN
@pytest.mark.timeout(90)
def test_a_check_that_raises_in_run_is_its_bug_not_a_failed_probe(
    answers_run: AnswersRun,
) -> None:
    """Each run's exception (a `RuntimeError`, not about the target) is the check's own
    bug (`checks.bugs`): no evidence, its rule without data ending the window
    inconclusive, its reason naming the bug, redacted; logged once, the window never
    retried, nothing rolled back. Before, each run was a failed probe: every probe
    failed, and the window failed and asked for its rollback."""
    watch = answers_run.watches["check"]
    code, said, deploy = watch.code, watch.said, watch.deploy

    assert code == 3, said
    assert deploy["state"] == "inconclusive", deploy
    assert answers_run.rollbacks == []
    reason = deploy["verdict"]["reason"]
    assert "check crashy (crashy) has a bug: RuntimeError: boom (secret ***) at" in reason, reason
    assert API_KEY not in json.dumps(deploy) and API_KEY not in answers_run.text
    logged = answers_run.logged
    told = [r for r in logged if r["logger"] == "checks.registry" and "has a bug" in r["msg"]]
    assert [r["level"] for r in told] == ["warning"], told  # once, not once a probe
    assert not [r for r in logged if "watching the window failed" in r["msg"]]


@ONE_ANSWERS_RUN
@pytest.mark.timeout(90)
def test_a_shared_run_sent_no_alert_its_deploys_tests_leave_out(answers_run: AnswersRun) -> None:
    """Each test reads its deploy's alerts by their title and its provider's warnings by
    the environment they name: every one the run sent is one of those, as each test's own
    agent once asserted of all it sent (`provider, end = sink.notifications`)."""
    run = answers_run
    titles = [n.title for n in run.notifications]
    about = [n.title for w in run.watches.values() for n in w.notifications]
    assert sorted(about) == sorted(titles), titles
    warned = [r for r in run.logged if r["msg"].startswith("provider buggy answered")]
    assert all(r.get("environment") in run.watches for r in warned), warned


@pytest.mark.timeout(60)
async def test_an_alert_whose_render_raises_holds_no_window_and_no_rollback_back(
    start_agent: AgentFactory,
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Already so (the notifier contains its render: the alert's outcome is `failed`,
    naming the exception), pinned: a failing deploy whose every alert's rendering
    raises still ends failed at its first round and its rollback is delivered, the
    window never retried."""

    def broken(alert: Any, redact: Any = None) -> tuple[str, str]:
        raise ValueError(f"template broke on {alert.event}")

    monkeypatch.setattr(notifier, "render", broken)
    receiver = RollbackReceiver(E2E_SECRET)
    await receiver.start()
    try:
        agent = await start_agent(
            failing_production(receiver.url),
            f"alerting:\n  channels:\n    - url: {json_sink.url()}\n",
            alert_retry_delays=(),
        )
        deploy = await agent.register("production", "v2")
        final = await agent.settled(deploy["id"])
        store = agent.app[STORE]
        events = await store.alert_events(deploy["id"])
    finally:
        await receiver.stop()

    assert final["state"] == "rolled_back", final
    assert len(receiver.delivered) == 1
    assert json_sink.notifications == []
    assert events.get("rollback_requested") == "failed", events
    said = [r.getMessage() for r in caplog.records]
    assert any("rollback_requested" in m and "not sent" in m for m in said), said
    assert not [m for m in said if "watching the window failed" in m], said


@pytest.mark.timeout(60)
async def test_an_alert_whose_render_raises_logs_its_traceback_once_and_its_retries_in_a_line(
    start_agent: AgentFactory,
    json_sink: JsonSink,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each retry rendered it again and logged the same traceback again: four an alert
    with the default three retries, the same 20 lines each time."""

    def broken(alert: Any, redact: Any = None) -> tuple[str, str]:
        raise ValueError(f"template broke on {alert.event}")

    monkeypatch.setattr(notifier, "render", broken)
    receiver = RollbackReceiver(E2E_SECRET)
    await receiver.start()
    try:
        agent = await start_agent(
            failing_production(receiver.url),
            f"alerting:\n  channels:\n    - url: {json_sink.url()}\n",
            alert_retry_delays=(0.05, 0.05, 0.05),
        )
        deploy = await agent.register("production", "v2")
        await agent.settled(deploy["id"])
        store = agent.app[STORE]
        for _ in range(400):  # every retry given up
            if (
                await store.next_alert_retry() is None
                and len(await store.alert_events(deploy["id"])) >= 2
            ):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"retries still due: {await store.alert_events(deploy['id'])}")
        events = await store.alert_events(deploy["id"])
    finally:
        await receiver.stop()

    alerts = [k for k in events if not k.startswith("rollback:")]  # those are no alerts
    assert len(alerts) == 3 and all(events[k] == "failed" for k in alerts), events
    for key in alerts:  # `breach:probe-errors`, `rollback_requested`…
        event = key.split(":")[0]
        about = [
            r
            for r in caplog.records
            if r.module == "notifier" and r.getMessage().startswith(f"alert {event} for ")
        ]
        traced = [r for r in about if r.exc_info]
        assert len(traced) == 1, (key, events, [r.getMessage() for r in about])
        assert traced[0].levelno == logging.ERROR
        retries = [r for r in about if "retry" in r.getMessage()]
        assert len(retries) == 3, [r.getMessage() for r in about]
        for record in retries:
            assert record.levelno == logging.WARNING and record.exc_info is None
            assert "ValueError: template broke on" in record.getMessage(), record.getMessage()
