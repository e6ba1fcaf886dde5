"""One reader per deploy (per process) for all of its event streams.

Fifty tabs open on one deploy in an incident made fifty streams, each reading the store
on every change (the window, and once it failed its rollback and the window again) and
every `RECHECK_S`: the store's load grew with the number of people watching. A
`DeployReader` subscribes to the deploy's news once, reads the store once per change
(and per `RECHECK_S`), and hands every stream the same `Snapshot` and the same stored
rounds; each stream still decides what to send from its own position (the rounds and
deploy object it has had), so an event id means what it did.

A stream that joins asks for a read that starts after it joined (never an older one's
answer: a late joiner gets the current deploy object), and joins arriving together
share one. A read the store does not answer leaves the streams following on what they
had, and fails only the joins that waited on it (a 503, as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agent.api.shown import shown_deploy
from agent.records import DeployWindow, RollbackIntent, RoundRecord
from agent.settings import Settings
from agent.store.base import Store, StoreError
from agent.web.feed import DeployFeed, Subscription
from agent.web.links import deploy_page_url

log = logging.getLogger("postflight.api")

RECHECK_S = 5.0
"""Without news from the feed, look at the store this often: news of another replica's
writes comes over PostgreSQL (`agent.web.pg_news`) and this catches what is lost."""
LIVE_SLACK_S = 0.05
"""A scheduled window is read again this long after its `deployed_at`, when the API no
longer marks it `scheduled` (nothing is written at that moment, so no news tells it)."""


def fingerprint(window_id: str, obj: dict[str, Any]) -> str:
    """What makes an event worth sending besides a round: the state, the verdict's
    outcome, the rollback's progress (a round's new evidence travels in its `round`
    event); a digest, as event ids carry it, of this deploy's."""
    outcome = (obj.get("verdict") or {}).get("outcome")
    said = json.dumps(
        [window_id, obj.get("state"), obj.get("scheduled"), outcome, obj.get("rollback")],
        sort_keys=True,
    )
    return hashlib.sha256(said.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The deploy as one read of the store found it, for every stream of it."""

    window: DeployWindow | None
    """None: no such deploy."""
    rollback: RollbackIntent | None
    current: dict[str, Any]
    """The deploy object (with the clock, as the API shows it: `scheduled: true` while its
    `deployed_at` is ahead)."""
    fingerprint: str
    rounds: int
    """The rounds stored when it was read."""

    @property
    def state(self) -> str | None:
        """The state as the page says it: `scheduled` for a window flagged so."""
        state: str | None = self.current.get("state")
        return "scheduled" if state == "watching" and self.current.get("scheduled") else state

    @property
    def finished(self) -> bool:
        """The window has ended and no rollback delivery is pending: the stream's end."""
        if self.window is None:
            return True
        rollback = self.rollback
        return not self.window.active and (rollback is None or rollback.state != "pending")


@dataclass(eq=False)
class Follower:
    """One stream, as its reader sees it: where it is, and how to wake it."""

    seen_rounds: int | None = None
    """The rounds it has been sent; None until its first snapshot (a new client starts
    at that snapshot's rounds)."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class DeployReader:
    """Reads one deploy for all of this process's streams of it (`following`)."""

    def __init__(
        self,
        window_id: str,
        store: Store,
        feed: DeployFeed,
        settings: Settings,
        clock: Callable[[], float],
    ) -> None:
        self.window_id = window_id
        self._store = store
        self._settings = settings
        self._clock = clock
        self._subscribing = feed.subscribe(window_id)
        self._news: Subscription = self._subscribing.__enter__()  # before any read
        self.followers: set[Follower] = set()
        self.snapshot: Snapshot | None = None
        self.window: DeployWindow | None = None
        """The latest window read, its `rounds` moved on by the rounds the feed brought
        since (the round events' progress)."""
        self._rounds: dict[int, RoundRecord] = {}
        """Stored rounds some stream has not been sent yet (by number)."""
        self.known = 0
        """The highest round number this reader has (stored, and in `_rounds` if needed)."""
        self._asked = False
        self._next: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )
        """Resolved by the next read to start (with its error, if it failed)."""
        self._stopped = False
        self._task: asyncio.Task[None] | None = asyncio.create_task(
            self._run(), name=f"deploy reader {window_id}"
        )
        self._task.add_done_callback(self._ended)

    @property
    def closed(self) -> bool:
        """The agent is stopping (or this reader stopped): every stream ends now."""
        return self._news.closed or self._stopped

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A reader that stopped by a bug ends its streams (a client reconnects to a new
        reader) and fails the joins waiting on it, where they would wait for good.
        Either way the reader lets go of its task: a task's end (its `CancelledError`, the
        traceback) holds `_run`'s frame, which holds the reader: a cycle only a full
        collection freed, a reader and its snapshot per stream (the daemon's are rare)."""
        self._task = None
        if task.cancelled():
            return
        error = task.exception() or RuntimeError("the deploy's reader stopped")
        log.error("event streams of %s: their reader stopped: %r", self.window_id, error)
        self._stopped = True
        if not self._next.done():
            self._next.set_result(error)
        for follower in self.followers:
            follower.wake.set()

    def round(self, number: int) -> RoundRecord | None:
        return self._rounds.get(number)

    async def fresh(self) -> None:
        """Wait for a read that starts after this call (a joining stream's first look);
        raise what it raised (a store that does not answer: `StoreError`)."""
        answer = self._next
        self.ask()
        error = await asyncio.shield(answer)
        if error is not None:
            raise error

    def ask(self) -> None:
        """Read again soon, without waiting for it."""
        self._asked = True
        self._news.wake.set()

    def close(self) -> None:
        self._subscribing.__exit__(None, None, None)
        if self._task is not None:
            self._task.cancel()
        if not self._next.done():
            self._next.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        read_at = loop.time() + RECHECK_S
        while True:
            wait = max(read_at - loop.time(), 0.0)
            if self.snapshot is not None and self.snapshot.state == "scheduled":
                assert self.snapshot.window is not None
                live_in = self.snapshot.window.deployed_at - self._clock()
                wait = min(wait, max(live_in, 0.0) + LIVE_SLACK_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._news.wake.wait()
            rounds, changed = self._news.take()
            asked, self._asked = self._asked, False
            due = loop.time() >= read_at or self._went_live()
            if not (rounds or changed or asked or due):
                self._tell()  # the agent may be stopping (`closed`): the streams end
                continue
            if not (changed or asked or due) and self._append(rounds):
                self._tell()  # rounds as stored, with their news: no read
                continue
            read_at = loop.time() + RECHECK_S
            await self._read(rounds)
            self._tell()

    def _went_live(self) -> bool:
        snapshot = self.snapshot
        return (
            snapshot is not None
            and snapshot.state == "scheduled"
            and snapshot.window is not None
            and self._clock() >= snapshot.window.deployed_at
        )

    def _append(self, rounds: list[RoundRecord]) -> bool:
        """Keep the rounds the feed brought, in order; False on a gap, or while the deploy
        is `scheduled` as last read (its `watching` goes before its rounds): read then."""
        if self.window is None or (
            self.snapshot is not None and self.snapshot.state == "scheduled"
        ):
            return False
        for record in sorted(rounds, key=lambda r: r.number):
            if record.number <= self.known:
                continue
            if record.number != self.known + 1:
                return False
            self._rounds[record.number] = record
            self.known = self.window.rounds = record.number
        return True

    async def _read(self, rounds: list[RoundRecord]) -> None:
        """Read the deploy once for every stream: the window, its rollback if it has or
        may have one, and the rounds some stream lacks."""
        answer, self._next = self._next, asyncio.get_running_loop().create_future()
        try:
            await self._look(rounds)
        except StoreError as exc:
            # the store is down for a moment: the streams stay open on what they had
            # and it is read again at the next news or recheck (a joining stream that
            # waited on this read is answered 503)
            log.debug("event stream of %s: store: %s", self.window_id, exc)
            answer.set_result(exc)
        except Exception as exc:
            log.exception("event stream of %s: reading the deploy failed", self.window_id)
            answer.set_result(exc)
        else:
            answer.set_result(None)

    async def _look(self, news_rounds: list[RoundRecord]) -> None:
        store, window_id = self._store, self.window_id
        window = await store.get_window(window_id) or self.window
        rollback = self.snapshot.rollback if self.snapshot is not None else None
        if window is not None:
            failing = (window.verdict or {}).get("outcome") == "fail"
            if not window.active or failing or rollback is not None:
                # the rollback, then the window again: a delivery that lands between the
                # two reads is then seen as `rolled_back` with a delivered rollback, never
                # as a `failed` window whose rollback was delivered (which would end the
                # stream)
                rollback = await store.get_rollback(window_id)
                window = await store.get_window(window_id) or window
                pending = rollback is not None and rollback.state == "pending"
                if pending and window.state == "rolled_back":
                    # delivered between the two reads, and the same transaction made the
                    # window rolled_back: read the rollback again rather than send a
                    # pair the store never held (rolled_back, its rollback still pending)
                    rollback = await store.get_rollback(window_id)
        known, kept = self.known, dict(self._rounds)
        if window is not None:
            if self.snapshot is None:
                known = window.rounds  # a new stream starts here: nothing before is owed
            for record in sorted(news_rounds, key=lambda r: r.number):
                if record.number == known + 1:
                    kept[record.number] = record
                    known = record.number
            wanted = self._lowest_wanted(window.rounds) + 1
            if any(n not in kept for n in range(wanted, window.rounds + 1)):
                # rounds no news brought (another replica's, or news lost), or a
                # reconnecting stream's from before this reader's: read once for all,
                # from the first one a stream lacks (the rounds before it were sent: a
                # tab reconnecting to a 720-round window read and parsed all 720)
                for record in await store.rounds(window_id, after=wanted - 1):
                    if record.number >= wanted:
                        kept[record.number] = record
            known = max(known, window.rounds)
        now = self._clock()
        server = self._settings.server
        page = deploy_page_url(server, window_id, now=now) if window else None
        # the deploy object as stored; a stream that starts from it gets the rounds the
        # feed brought since as `round` events
        current = (
            await shown_deploy(store, window, rollback, page=page, now=now, settings=self._settings)
            if window
            else {}
        )
        said = fingerprint(window_id, current)
        stored = window.rounds if window is not None else 0
        self.snapshot = Snapshot(window, rollback, current, said, stored)
        self.window = dataclasses.replace(window, rounds=known) if window else None
        self._rounds, self.known = kept, known

    def _lowest_wanted(self, default: int) -> int:
        """The fewest rounds any stream has had (one that has had none yet starts at the
        latest read's rounds)."""
        start = self.snapshot.rounds if self.snapshot is not None else default
        had = [f.seen_rounds if f.seen_rounds is not None else start for f in self.followers]
        return min(had, default=start)

    def _tell(self) -> None:
        """Wake every stream, and drop the rounds each of them has had."""
        if self.snapshot is not None:
            lowest = self._lowest_wanted(self.snapshot.rounds)
            for number in [n for n in self._rounds if n <= lowest]:
                del self._rounds[number]
        for follower in self.followers:
            follower.wake.set()


_READERS: weakref.WeakKeyDictionary[DeployFeed, dict[str, DeployReader]] = (
    weakref.WeakKeyDictionary()
)
"""The readers of each feed (one per application), by deploy id."""


@contextlib.contextmanager
def following(
    feed: DeployFeed,
    window_id: str,
    follower: Follower,
    store: Store,
    settings: Settings,
    clock: Callable[[], float],
) -> Iterator[DeployReader]:
    """`window_id`'s reader, shared with its other streams of this process, with
    `follower` among its streams until the block exits; the last to leave closes it."""
    readers = _READERS.setdefault(feed, {})
    reader = readers.get(window_id)
    if reader is None:
        reader = readers[window_id] = DeployReader(window_id, store, feed, settings, clock)
    reader.followers.add(follower)
    try:
        yield reader
    finally:
        reader.followers.discard(follower)
        if not reader.followers and readers.get(window_id) is reader:
            del readers[window_id]
            reader.close()


def readers_of(feed: DeployFeed) -> dict[str, DeployReader]:
    """The open readers of `feed`'s application, by deploy id (tests, benches)."""
    return dict(_READERS.get(feed, {}))
