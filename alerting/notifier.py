"""Sending alerts through apprise 2.x to the channels an environment's tags pick.

What it must not do: raise, block the event loop, take longer than `timeout`, or
leak a secret. apprise runs each plugin's blocking `send()` (requests, smtplib)
in worker threads and `async_notify(timeout=…)` stops waiting at the deadline,
so a hung SMTP server costs one worker thread for a bounded time and never the
loop, a round or a rollback. Each channel gets its own `Apprise` object so its
outcome is known exactly; every result is logged (redacted) and counted in
`postflight_alerts_total{result}`, but a retry's repeated failure (`send(retry=N)`,
see `agent.windows.alert_once`), which is logged at info only: `failed` counts alerts
a channel failed, as before there were retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from agent.alert_channels import channel_label, piece_redactor, routed, unusable_channel
from agent.apprise_plugins import load_plugins_for
from agent.logs import SAID_ELSEWHERE
from agent.metrics import Metrics
from agent.settings import AlertChannel
from alerting.cycles import drop_request_tracebacks, reuse_markdown, sending
from alerting.events import Alert
from alerting.mail_text import inline_code_in_text
from alerting.templates import late_note, markdown_title, render
from common.woken import LATE_S, WOKEN_LOOK_S

if TYPE_CHECKING:
    import apprise

log = logging.getLogger("postflight.alerting")

GRACE_S = 0.5
"""Our own guard beyond apprise's deadline, in case a plugin ignores it."""

THROTTLE_SHARE = 0.1
"""A channel's apprise throttle (the least time between two sends through it: 5.5 s for
e-mail and every plugin that keeps apprise's default) is cut to this share of the
timeout. Waited out inside the send, 5.5 s ran past a 5 s timeout: a second e-mail
within 5.5 s of the first was counted and logged as failed, then delivered. Our
alerts are few (one per deploy and event), so a short courtesy pause is enough."""

START_SHARE = 0.5
"""A channel's send is handed to apprise only while this share of the timeout is left:
one started later would have too little time to answer and be reported failed though it
may still deliver from its thread (then again on its retry)."""

HUNG_SHARE = 0.9
"""A channel that failed only after this share of its time to answer had passed gave no
answer (a server that took the connection and said nothing, or a dropped SYN): said as
such, not as apprise's "Connection error"."""

NotifyResultName = Literal["sent", "partial", "failed", "unrouted"]


def _apprise_workers() -> int:
    """The worker threads of apprise's shared pool (where every channel's blocking send
    runs). A send waiting there for a thread past the timeout was reported failed and
    delivered all the same once one was free, then again by its retry."""
    from apprise.apprise import get_shared_executor

    # ThreadPoolExecutor keeps its size only in `_max_workers` (no public reader); apprise
    # 2.3 makes it with the default, but reading it follows a size apprise may set later
    workers = getattr(get_shared_executor(), "_max_workers", None)
    return workers if isinstance(workers, int) and workers > 0 else 4


def channel_share(workers: int, channels: int) -> int:
    """How many of apprise's `workers` one of `channels` may hold at once: an equal share
    (at least one). A channel that takes the connection and says nothing holds each of its
    sends' threads for the whole timeout; with no share, a burst of alerts (12 deploys
    failing in one round) gave it every thread, and a healthy channel's alerts waited
    behind it until they were reported failed, 7 of its 12 "rollback requested"."""
    return max(1, workers // max(1, channels))


async def _acquired(slots: asyncio.Semaphore, by: float) -> bool:
    """Whether one of `slots` was taken by the loop time `by` (held then: release it)."""
    try:
        async with asyncio.timeout_at(by):
            await slots.acquire()
    except TimeoutError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """One channel's outcome for one alert."""

    index: int
    """The channel's position in `alerting.channels`."""
    url: str
    """apprise's privacy-masked URL cut to its scheme and host (`agent.alert_channels.
    channel_label`), redacted again: safe to log and store."""
    sent: bool
    detail: str

    @property
    def key(self) -> str:
        """Names the channel in the store (`channel_key`)."""
        return channel_key(self.index, self.url)


def channel_key(index: int, url: str) -> str:
    """Names a channel in the store (`Store.note_alert_channel`): its position and label,
    so a channel moved or replaced across a restart is not taken for another."""
    return f"{index}:{url}"


SENT_BEFORE = "sent before a restart"
"""A channel's detail when an alert finished after a crash had already reached it."""


@dataclass(frozen=True, slots=True)
class NotifyOutcome:
    """What happened to one alert across the channels its tags picked."""

    channels: tuple[ChannelResult, ...]

    @property
    def sent(self) -> int:
        return sum(1 for c in self.channels if c.sent)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.channels if not c.sent)

    @property
    def taken_by(self) -> list[str]:
        """The keys of the channels that took it (`ChannelResult.key`)."""
        return [c.key for c in self.channels if c.sent]

    @property
    def delivered(self) -> bool:
        """At least one channel took it: someone has been told."""
        return self.sent > 0

    @property
    def result(self) -> NotifyResultName:
        if not self.channels:
            return "unrouted"
        if not self.failed:
            return "sent"
        return "partial" if self.sent else "failed"

    def describe(self) -> str:
        """One line for the store and logs: `1 of 2 channel(s) sent; json://… failed: …`."""
        if not self.channels:
            return "no channel matches the environment's alert tags"
        text = f"{self.sent} of {len(self.channels)} channel(s) sent"
        failures = [f"{c.url} failed: {c.detail}" for c in self.channels if not c.sent]
        return "; ".join([text, *failures])


_RETRYING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "postflight_alert_retrying", default=False
)
"""Set in a retry's channel sends; apprise runs its plugins in a copy of that context."""


class _Sends:
    """What one channel's worker threads did with an alert, whatever apprise reports:
    `Notifier._record_sends` tells it of each blocking send (a piece of the message) as it
    starts and ends, even after apprise stopped waiting for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._running = 0
        self._results: list[bool] = []
        self._changed = asyncio.Event()

    def started(self) -> None:
        with self._lock:
            self._running += 1

    def ended(self, ok: bool) -> None:
        with self._lock:
            self._running -= 1
            self._results.append(ok)
        with contextlib.suppress(RuntimeError):  # the loop closed: no one is waiting
            self._loop.call_soon_threadsafe(self._changed.set)

    def delivered(self) -> bool:
        """Every send started has ended, and each was accepted."""
        with self._lock:
            return self._running == 0 and bool(self._results) and all(self._results)

    def busy(self) -> bool:
        with self._lock:
            return self._running > 0

    async def settled(self, within: float) -> bool:
        """Whether every send started ends within `within` seconds accepted."""
        loop = asyncio.get_running_loop()
        until = loop.time() + within
        while self.busy() and (left := until - loop.time()) > 0:
            self._changed.clear()
            if not self.busy():
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._changed.wait()
        return self.delivered()


_SENDS: contextvars.ContextVar[_Sends | None] = contextvars.ContextVar(
    "postflight_alert_sends", default=None
)
"""Set in each channel send's task; apprise runs its worker threads in a copy of that
context, so the thread finds the `_Sends` to tell."""


class _AppriseLogGuard(logging.Filter):
    """apprise logs full service URLs and payloads (tokens included) at DEBUG; keep
    only its warnings and errors, redacted. A retry's are info: its channel's first
    failure was the warning, and a channel down for minutes is not one per attempt. Those
    of a channel's send are captured for its result (`Notifier._explain`), which the
    failure line of `postflight.alerting` quotes, and left out of the log
    (`agent.logs.SAID_ELSEWHERE`): each failure was two lines."""

    def __init__(self) -> None:
        super().__init__()
        # Weak: a Notifier's redactor goes with it (tests make many).
        self._weak: weakref.WeakSet[Any] = weakref.WeakSet()
        self._strong: list[Callable[[str], str]] = []

    def add(self, redact: Callable[[str], str]) -> None:
        try:
            self._weak.add(redact)
        except TypeError:  # not weak-referenceable (a builtin function…)
            if redact not in self._strong:
                self._strong.append(redact)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        text = record.getMessage()
        for redact in [*self._weak, *self._strong]:
            text = redact(text)
        record.msg, record.args = text, None
        if _SENDS.get() is not None:  # a channel's send: its failure line quotes this
            setattr(record, SAID_ELSEWHERE, True)
        if _RETRYING.get():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_GUARD = _AppriseLogGuard()


def _guard_apprise_logs(redact: Callable[[str], str]) -> None:
    logger = logging.getLogger("apprise")
    if _GUARD not in logger.filters:
        logger.addFilter(_GUARD)
    _GUARD.add(redact)


def channel_url_errors(channels: Sequence[AlertChannel]) -> list[str]:
    """Messages for channels whose URL apprise cannot use (the settings refuse them at
    load time); the URLs themselves are never shown, only their positions and schemes."""
    errors = []
    for index, channel in enumerate(channels):
        problem = unusable_channel(channel.url.get_secret_value())
        if problem is not None:
            errors.append(f"alerting.channels.{index}.url: {problem}")
    return errors


def _title_in_body(service: object) -> bool:
    """apprise puts a title atop the body, converted from the body's format as the body
    is, for a plugin with no title of its own (`title_maxlen` 0: Mattermost, Rocket.Chat,
    Telegram…); and Discord's plugin puts it atop its message's markdown content unless
    the URL asks for an embed (`format=markdown`), whose title is text. Any other gets it
    apart, as text (an e-mail's subject, a json:// field, Slack's and Matrix's escaped)."""
    length = getattr(service, "title_maxlen", None)
    if isinstance(length, int) and length <= 0:
        return True
    if type(service).__name__ == "NotifyDiscord":
        # apprise keeps the URL's `format=` only there (no public reader); unknown, the
        # title is escaped: a backslash shown beats a link or an @everyone of the sender's
        override = getattr(service, "_format_override", None)
        return getattr(override, "value", override) != "markdown"
    return False


class Notifier:
    """Sends `Alert`s to the configured apprise channels, routed by tags.

    `send` never raises and returns within about `timeout` seconds whatever the
    channels do. Construct it once at start-up (loading apprise's plugins takes a
    moment, so it is loaded only when there are channels); it is safe to share between
    windows.
    """

    def __init__(
        self,
        channels: Sequence[AlertChannel],
        *,
        timeout: float,
        redact: Callable[[str], str],
        metrics: Metrics,
    ) -> None:
        if not timeout > 0:
            raise ValueError("alerting.timeout must be more than 0s")
        self._timeout = float(timeout)
        self._redact = redact
        self._metrics = metrics
        self._tags = [frozenset(c.tags) for c in channels]
        self._tasks: set[asyncio.Task[ChannelResult]] = set()
        self._slots: asyncio.Semaphore | None = None
        """As many channel sends at once as apprise has threads (`_apprise_workers`)."""
        self._shares: list[asyncio.Semaphore] = []
        """Per channel, its share of those (`channel_share`): a hung one holds no more."""
        _guard_apprise_logs(redact)
        # apprise quotes URLs piece by piece (a Slack token alone): hide every piece
        self._pieces = piece_redactor(c.url.get_secret_value() for c in channels)
        _guard_apprise_logs(self._pieces)
        self._channels: list[apprise.Apprise | None] = []
        self._urls: list[str] = []
        self._titles_in_body: list[bool] = []
        """Per channel: its plugin puts the title atop the body, read as markdown."""
        if channels:  # without any, nothing is ever sent: apprise is not even loaded
            self._add_channels(channels)

    def _add_channels(self, channels: Sequence[AlertChannel]) -> None:
        import apprise

        drop_request_tracebacks()  # no cycle left per alert (`alerting.cycles`)
        reuse_markdown()
        inline_code_in_text()  # an e-mail's text part (`alerting.mail_text`)
        load_plugins_for(c.url.get_secret_value() for c in channels)
        asset = apprise.AppriseAsset(app_id="Postflight", async_mode=True)
        workers = _apprise_workers()
        self._slots = asyncio.Semaphore(workers)
        share = channel_share(workers, len(channels))
        self._shares = [asyncio.Semaphore(share) for _ in channels]
        for index, channel in enumerate(channels):
            ap = apprise.Apprise(asset=asset)
            if ap.add(channel.url.get_secret_value()):
                for service in ap:
                    self._bound_socket_timeouts(service)
                    self._record_sends(service)
                masked: str = ap[0].url(privacy=True)  # type: ignore[no-untyped-call]
                self._urls.append(self._redact(channel_label(masked)))
                self._channels.append(ap)
                self._titles_in_body.append(any(_title_in_body(s) for s in ap))
            else:
                log.error(
                    "alert channel %d has a URL apprise cannot use; it will count as failed",
                    index,
                    extra={"channel": index},
                )
                self._urls.append(f"channel {index} (invalid URL)")
                self._channels.append(None)
                self._titles_in_body.append(False)

    def _bound_socket_timeouts(self, service: object) -> None:
        """A plugin's socket waits (email: 15 s by default) outlive apprise's deadline
        in their worker thread; keep them within `timeout` so a hung server frees
        the thread (and process exit) soon after. A plugin's default shorter than it
        (apprise's 4 s) is raised to it: a channel answering in 4.5 s failed under a
        10 s `alerting.timeout` and was sent the alert again by each retry. A URL's own
        `cto`/`rto` (an attribute of the instance) is kept within it. Its throttle too
        (`THROTTLE_SHARE`)."""
        for name in ("socket_connect_timeout", "socket_read_timeout"):
            value = getattr(service, name, None)
            if not isinstance(value, int | float):
                continue
            if name not in vars(service) or value > self._timeout:
                setattr(service, name, self._timeout)
        pause = getattr(service, "request_rate_per_sec", None)
        if isinstance(pause, int | float) and pause > THROTTLE_SHARE * self._timeout:
            service.request_rate_per_sec = THROTTLE_SHARE * self._timeout  # type: ignore[attr-defined]

    @staticmethod
    def _record_sends(service: object) -> None:
        """Each blocking send of `service` (its plugin's `send()`, apprise's public method
        for one piece of a message, run in a worker thread) tells the `_Sends` of its task
        how it ended: apprise abandons a thread at its deadline, and a send it reported
        timed out may have been accepted all the same. (apprise 2.x has no public hook
        for a send's late outcome: its results stop at the deadline.)"""
        send = getattr(service, "send", None)
        if not callable(send):
            return

        def recorded_send(*args: Any, **kwargs: Any) -> Any:
            sends = _SENDS.get()
            if sends is None:
                return send(*args, **kwargs)
            sends.started()
            ok = False
            try:
                result = send(*args, **kwargs)
                ok = bool(result)
                return result
            finally:
                sends.ended(ok)

        service.send = recorded_send  # type: ignore[attr-defined]

    @property
    def worst_case_s(self) -> float:
        """The longest `send` takes: apprise's deadline and our guard."""
        return self._timeout + GRACE_S

    def route(self, tags: Sequence[str]) -> list[int]:
        """The channels for an environment's `alerts.tags`: those sharing a tag with
        it; every channel when the environment names no tags."""
        return routed(self._tags, tags)

    def channel_keys(self, tags: Sequence[str]) -> list[str]:
        """The keys (`ChannelResult.key`) of the channels `route` picks for `tags`."""
        return [channel_key(i, self._urls[i]) for i in self.route(tags)]

    async def send(
        self,
        alert: Alert,
        tags: Sequence[str],
        *,
        skip: Collection[str] = (),
        on_sent: Callable[[str], Awaitable[None]] | None = None,
        retry: int = 0,
        ahead_of: str | None = None,
        held: Mapping[str, str] | None = None,
    ) -> NotifyOutcome:
        """Notify the routed channels concurrently; never raises (but for
        cancellation), never takes much longer than `timeout` (and `on_sent`'s awaits).

        `skip`: keys (`ChannelResult.key`) of channels that took it already, reported
        sent and not sent again. `on_sent(key)` is awaited as each channel takes it, so a
        crash mid-send leaves a record of who was told; it must not raise.
        `retry` (> 0: the alert's Nth retry): a channel failing again is logged at info
        and not counted, as its first failure was (`failed` counts alerts a channel
        failed, not attempts); one taking it is counted `sent` and logged so.
        `ahead_of` (with `retry`): a catch-up sent ahead of the later alert `ahead_of`, not one
        of the alert's retries, and logged so.
        `held`: keys of channels not sent it now, each with the earlier alert still owed
        there that on-call must read first: reported, logged and counted failed there, as
        a channel that failed it (it is retried there)."""
        attempt = f"sent again before {ahead_of}" if ahead_of else f"retry {retry}"
        delivered = f"delivered when {attempt}" if ahead_of else f"delivered on retry {retry}"
        context = {
            "deploy_id": alert.deploy_id,
            "environment": alert.environment,
            "event": alert.event,
        }
        try:
            indexes = self.route(tags)
            if not indexes:
                why = (
                    f"no channel has any of the tags {sorted(tags)}"
                    if self._urls
                    else "no channel is configured (alerting.channels is empty)"
                )
                log.warning(
                    "alert %s for %s not sent: %s", alert.event, alert.deploy_id, why, extra=context
                )
                return NotifyOutcome(())
            title, body = render(alert, self._redact)
            if retry:
                body += "\n" + late_note(retry)
            before = [ChannelResult(i, self._urls[i], True, SENT_BEFORE) for i in indexes]
            before = [c for c in before if c.key in skip]
            owing = held or {}
            keys = {i: channel_key(i, self._urls[i]) for i in indexes}
            waiting = [
                ChannelResult(i, self._urls[i], False, f"held behind {owing[k]}, still owed there")
                for i, k in keys.items()
                if k in owing and k not in skip
            ]
            skipped = {c.index for c in [*before, *waiting]}
            deadline = asyncio.get_running_loop().time() + self._timeout
            tasks = {
                i: asyncio.ensure_future(
                    self._send_one(
                        i, self._title(i, title), body, alert.notify_type, retry, deadline
                    )
                )
                for i in indexes
                if i not in skipped
            }
            for task in tasks.values():
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            try:
                await self._wait(list(tasks.values()), on_sent)
            except asyncio.CancelledError:  # the caller gave up: so do we
                for task in tasks.values():
                    task.cancel()
                raise
            results = []
            for i, task in tasks.items():
                if task.done() and not task.cancelled() and task.exception() is None:
                    results.append(task.result())
                else:
                    task.cancel()
                    results.append(
                        ChannelResult(
                            i, self._urls[i], False, f"no answer within {self._timeout:g}s"
                        )
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            said = self._redact(f"{type(exc).__name__}: {exc}")
            if retry:  # its traceback was logged at its first send: 4 an alert, alike
                log.warning(
                    "alert %s for %s: %s not sent: %s",
                    alert.event,
                    alert.deploy_id,
                    attempt,
                    said,
                    extra=context,
                )
            else:
                log.exception(
                    "alert %s for %s not sent", alert.event, alert.deploy_id, extra=context
                )
            failed = ChannelResult(-1, "-", False, said)
            if not retry:
                self._metrics.alerts_total.labels(result="failed").inc()
            return NotifyOutcome((failed,))
        results += waiting
        for result in results:
            if result.sent or not retry:
                self._metrics.alerts_total.labels(result="sent" if result.sent else "failed").inc()
            if result.sent:
                log.info(
                    "alert %s for %s %s to %s",
                    alert.event,
                    alert.deploy_id,
                    delivered if retry else "sent",
                    result.url,
                    extra={**context, "channel": result.index},
                )
            elif retry:
                log.info(
                    "alert %s for %s: %s failed on %s: %s",
                    alert.event,
                    alert.deploy_id,
                    attempt,
                    result.url,
                    result.detail,
                    extra={**context, "channel": result.index},
                )
            else:
                log.warning(
                    "alert %s for %s failed on %s: %s",
                    alert.event,
                    alert.deploy_id,
                    result.url,
                    result.detail,
                    extra={**context, "channel": result.index},
                )
        return NotifyOutcome(tuple(sorted([*before, *results], key=lambda c: c.index)))

    def _title(self, index: int, title: str) -> str:
        """The title as channel `index` takes it: escaped as markdown where apprise makes
        it the body's first line (`alerting.templates.markdown_title`)."""
        return markdown_title(title) if self._titles_in_body[index] else title

    async def _wait(
        self,
        tasks: list[asyncio.Task[ChannelResult]],
        on_sent: Callable[[str], Awaitable[None]] | None,
    ) -> None:
        """Wait for the channels until the deadline, telling `on_sent` of each that took
        it as it does (the deadline does not move for `on_sent`'s awaits)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout + GRACE_S
        pending, looked = set(tasks), False
        while pending:
            left = deadline - loop.time()
            if left <= 0:
                # found late (the agent was stopped): the sends' own look goes first
                if looked or -left < LATE_S:
                    return
                looked, deadline = True, loop.time() + WOKEN_LOOK_S + GRACE_S
                continue
            done, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            if on_sent is None:
                continue
            for task in done:
                if not task.cancelled() and task.exception() is None and task.result().sent:
                    await on_sent(task.result().key)

    async def _send_one(
        self, index: int, title: str, body: str, notify_type: str, retry: int, deadline: float
    ) -> ChannelResult:
        url = self._urls[index]
        ap = self._channels[index]
        if ap is None or self._slots is None:
            return ChannelResult(index, url, False, "apprise cannot use this channel's URL")
        own = self._shares[index]
        waited = START_SHARE * self._timeout
        if not await _acquired(own, deadline - waited):
            busy = f"not started within {waited:g}s: its share of apprise's senders"
            return ChannelResult(
                index, url, False, busy + " was busy with its earlier alerts, unanswered"
            )
        try:
            if not await _acquired(self._slots, deadline - waited):
                busy = f"not started within {waited:g}s: all {_apprise_workers()} of apprise's"
                return ChannelResult(
                    index, url, False, busy + " senders were busy with other alerts"
                )
            try:
                return await self._notify(ap, index, title, body, notify_type, retry, deadline)
            finally:
                self._slots.release()
        finally:
            own.release()

    async def _notify(
        self,
        ap: apprise.Apprise,
        index: int,
        title: str,
        body: str,
        notify_type: str,
        retry: int,
        deadline: float,
    ) -> ChannelResult:
        """One channel's send through apprise, within what is left of the timeout."""
        from apprise import NotifyFormat  # loaded already: this channel has its `Apprise`

        url = self._urls[index]

        how: dict[str, Any] = {}
        if retry:  # this task's own context: apprise's lines about it become info…
            _RETRYING.set(True)
            how["log_level"] = logging.INFO  # …and are still captured for `_explain`
        loop = asyncio.get_running_loop()
        started = loop.time()
        sends = _Sends(loop)
        _SENDS.set(sends)  # this task's own context, copied into apprise's threads
        try:
            with sending():
                res = await ap.async_notify(
                    body=body,
                    title=title,
                    notify_type=notify_type,
                    body_format=NotifyFormat.MARKDOWN,
                    timeout=max(0.1, deadline - asyncio.get_running_loop().time()),
                    **how,
                )
        except Exception as exc:  # apprise promises not to, but a plugin may
            return ChannelResult(
                index, url, False, self._pieces(self._redact(f"{type(exc).__name__}: {exc}"))
            )
        if res:
            return ChannelResult(index, url, True, "sent")
        if loop.time() - deadline >= LATE_S and await sends.settled(WOKEN_LOOK_S):
            # apprise's deadline fired on waking, before its thread read the 2xx
            return ChannelResult(index, url, True, "sent (answered while the agent was paused)")
        why = self._explain(res, demoted=bool(retry))
        if loop.time() - started >= HUNG_SHARE * min(self._timeout, deadline - started):
            # a server that took the connection and said nothing: apprise calls it "a
            # Connection error", which sends on-call looking for one that is down
            why = f"no answer within {self._timeout:g}s (alerting.timeout); apprise: {why}"
        return ChannelResult(index, url, False, why[:500])

    def _explain(self, res: apprise.AppriseResult, demoted: bool = False) -> str:
        """Why a channel failed, from apprise's status and captured log lines (`demoted`:
        a retry's, whose warnings the log guard made info)."""
        status = getattr(res.status, "name", str(res.status)).lower()
        levels = {"WARNING", "ERROR", "CRITICAL"} | ({"INFO"} if demoted else set())
        messages: list[str] = []
        for service in res.results:
            for entry in service.logs():
                if entry.level in levels and entry.message:
                    messages.append(entry.message)
        for entry in res.call_logs():
            if entry.level in levels and entry.message:
                messages.append(entry.message)
        text = status + (": " + " ".join(messages[:3]) if messages else "")
        return self._pieces(self._redact(" ".join(text.split())))[:500]
