"""A rollback's provider markers (Sentry's deploy of the previous release, New Relic's
change event), claimed with the window's end so that a kill cannot lose them.

Why: the markers were spawned once the failed verdict and its rollback intent were
stored, and nothing else knew they were owed: a kill -9 at that instant (or while a
provider answered slowly) delivered the rollback, from its stored intent, and left no
trace of it at Sentry or New Relic (`tests/e2e/test_crash_end.py`). Now each provider's
marker is a payload-less claim (`marker_key`) in the end's transaction, given an outcome
once written (or refused, which is alerted as before); a claim left without one is its
dead sender's, taken over by `resume_markers` (every replica's supervisor turn) once the
store lease has lapsed, or at once at the start of the replica whose rollback it is.
At least once: a kill between a provider's answer and the outcome writes it again.
The outcome says what is known: `sent`, "marked", only from a provider that says it writes
markers (`marks`); a plugin that does not say is asked all the same, and its outcome is
`asked` (its None may mean it writes none).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from agent.providers.base import DeployScope, Provider
from agent.records import DeployWindow
from agent.settings import EnvironmentSettings, Settings
from agent.stopping import named_for_a_stop
from agent.store.base import AlertClaim, Store
from agent.windows.alert_once import WindowAlerts
from alerting.events import Alert, provider_key

log = logging.getLogger("postflight.windows")

MARKER_PREFIX = "rollback:marker:"


def marker_key(provider: str) -> str:
    """`Store.claim_alert` key of a rollback's marker at one provider."""
    return MARKER_PREFIX + provider


def marks(provider: Provider) -> bool:
    """Whether `provider` writes markers: its `marks` (`markers: true` for Sentry and New
    Relic, never for the others); a plugin saying nothing of it is asked, as before."""
    return bool(getattr(provider, "marks", True))


def says_if_it_marks(provider: Provider) -> bool:
    """Whether `provider` says if it writes markers (`marks`: the built-ins do; the
    plugin protocol does not ask it). One that does not is asked all the same, but its
    `mark` answering None ("written, or not enabled") is no proof of a marker."""
    return hasattr(provider, "marks")


def unknown_marker(name: str) -> str:
    """The outcome's words for a marker asked of a provider that does not say whether it
    writes markers (`says_if_it_marks`), and that refused nothing."""
    return (
        f"asked; {name} does not say whether it writes markers (no `marks`), so none is"
        " known written"
    )


def marking(env: EnvironmentSettings, providers: Mapping[str, Provider]) -> list[str]:
    """The providers a rollback of `env` is marked at: those its rules read whose markers
    are on. Why: one with markers off writes none, where its claim was recorded `sent`,
    "marked", in every failed window's end."""
    return [
        name
        for name, provider in providers.items()
        if marks(provider) and any(r.source == name for r in env.rules)
    ]


def marker_claims(env: EnvironmentSettings, providers: Mapping[str, Provider]) -> list[AlertClaim]:
    """The claims a failed window's end stores with its rollback intent."""
    return [AlertClaim(marker_key(name)) for name in marking(env, providers)]


def scope_of(window: DeployWindow, env: EnvironmentSettings) -> DeployScope:
    """The deploy as its providers are told of it: what its watch queries and its
    rollback's markers name (one making, so that the two never differ)."""
    return DeployScope(
        deploy_id=window.id,
        environment=window.environment,
        version=window.version,
        previous_version=window.previous_version,
        deployed_at=window.deployed_at,
        baseline=env.baseline,
        canary=env.baseline_url is not None,
    )


class MarkerServices(Protocol):
    """What marking needs of `agent.windows.lifecycle.WatchServices`."""

    @property
    def store(self) -> Store: ...
    @property
    def alerts(self) -> WindowAlerts: ...
    @property
    def providers(self) -> Mapping[str, Provider]: ...
    @property
    def lease_s(self) -> float: ...
    def clock(self) -> float: ...


async def mark_rollback(
    window: DeployWindow,
    env: EnvironmentSettings,
    s: MarkerServices,
    name: str,
    *,
    lapsed_before: float,
) -> None:
    """The rollback's marker at provider `name`, if its claim is this caller's: the end's
    sender (`lapsed_before` past its claim time) or a taker of a lapsed claim. A marker
    the provider refused is the provider's one `provider_unreachable` alert of the window
    (claimed before the marker's outcome is stored). Never raises, except
    `CancelledError`: a store error leaves the claim to be taken over."""
    provider = s.providers.get(name)
    key = marker_key(name)
    context = {"deploy_id": window.id, "environment": window.environment}
    try:
        if provider is None:  # gone from the configuration since: nobody can write it
            await s.store.record_alert(window.id, key, "dropped", f"provider {name} gone")
            return
        if not marks(provider):  # claimed before its markers were turned off
            await s.store.record_alert(window.id, key, "dropped", f"{name} markers off")
            return
        if await s.store.take_alert(window.id, key, s.clock(), lapsed_before) is None:
            return  # another sender's, or done
        named_for_a_stop(
            f"the {name} marker of rollback {window.id} (claimed with the window's end:"
            " written at the next start if cut)"
        )
        problem = await provider.mark(scope_of(window, env), "rollback")
        if problem:
            alert = Alert.for_window(
                window,
                "provider_unreachable",
                reason=f"{name}: {problem}",
                provider=name,
                rollback_target=env.rollback.target if env.rollback else "webhook",
            )
            await s.alerts.emit(window, alert, env.alerts.tags, key=provider_key(name))
        if problem:
            outcome = ("failed", problem)
        elif says_if_it_marks(provider):
            outcome = ("sent", "marked")
        else:  # recorded "sent", "marked", though such a plugin may write none
            outcome = ("asked", unknown_marker(name))
        await s.store.record_alert(window.id, key, *outcome)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.warning(
            "the %s marker of rollback %s waits: its claim is taken over later",
            name,
            window.id,
            exc_info=True,
            extra=context,
        )


async def resume_markers(
    s: MarkerServices,
    settings: Settings,
    spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[Any]],
    in_flight: set[tuple[str, str]],
    *,
    owner: str | None = None,
) -> None:
    """Spawn the markers whose claim has no outcome and whose sender is gone: its claim
    older than the store lease, or, with `owner` (a start), of a rollback leased to
    `owner`, this replica's name (its process before the restart, killed as it marked).
    `in_flight` holds the (window, provider) this process is marking."""
    now = s.clock()
    for name in s.providers:
        owed = await s.store.claims_without_outcome(marker_key(name))
        for window in await s.store.get_windows(owed) if owed else []:
            if (window.id, name) in in_flight:
                continue
            env = settings.environments.get(window.environment)
            if env is None:
                await s.store.record_alert(window.id, marker_key(name), "dropped", "env gone")
                continue
            lapsed_before = now - s.lease_s
            if owner is not None:
                intent = await s.store.get_rollback(window.id)
                if intent is not None and intent.lease_owner == owner:
                    lapsed_before = now + 1.0
            mark = (window.id, name)
            in_flight.add(mark)
            task = spawn(mark_rollback(window, env, s, name, lapsed_before=lapsed_before))
            task.add_done_callback(functools.partial(_done, in_flight, mark))


def _done(in_flight: set[tuple[str, str]], mark: tuple[str, str], _: asyncio.Task[Any]) -> None:
    in_flight.discard(mark)
