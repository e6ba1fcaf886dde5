"""What the agent tells on-call about: one `Alert` per deploy and event. Pure data.

An alert carries the evidence a human needs to act without opening a dashboard:
the rules with observed, baseline and threshold, the reason, and the deploy id.
No I/O here; `alerting.templates` renders it, `alerting.notifier` sends it.

A new event is its name in `AlertEvent` plus one `EventSpec` in `EVENTS` (how loud,
the body's headline, the title's summary); then emit it where it happens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.records import DeployWindow, SentBefore
from common.breaching import SHORT_OF_EVIDENCE, past_their_bounds, unproven
from common.words import counted

AlertEvent = Literal[
    "breach",
    "resolved",
    "failed",
    "rollback_requested",
    "rollback_skipped",
    "rollback_delivered",
    "rollback_failed",
    "passed",
    "inconclusive",
    "provider_unreachable",
    "integration_failed",
    "check_bug",
]
"""`failed`: the verdict failed and the environment has no `rollback` (no target of any
kind: a webhook, Vercel or GitHub).
`rollback_skipped`: the verdict failed and the environment's `rollback.dry_run` is on.
`integration_failed`: a call to GitHub or Vercel the deploy called for (a deployment or
commit status, a protection rule's answer, a Rolling Release approval) was given up, or
a Rolling Release approval declined with the release left waiting at its stage
(`Alert.call` says which): whoever waits on it must be told by hand.
`check_bug`: a check's own bug ended runs of the window (`checks.bugs`), which are no
evidence: the window is judged on fewer probes (`Alert.check` names the check)."""

IntegrationCall = Literal["status", "commit_status", "gate", "approval", "approval_declined"]
"""Which given-up call an `integration_failed` alert is about (`INTEGRATION_HEADLINES`);
`approval_declined`: a Rolling Release approval not sent, the window's verdict not known
to be about the stage now active, the release left waiting at it."""

RollbackTarget = Literal["webhook", "vercel", "github", "then"]
"""Who a rollback event is about: `rollback.target`, or `then` for a `rollback.then`
follow-up after the rollback was delivered."""

NotifyType = Literal["info", "success", "warning", "failure"]
"""apprise's notify types (they pick each service's colour and icon)."""


def breach_key(rule: str) -> str:
    """The dedup key of a rule's breach: one per deploy and rule, not per round."""
    return f"breach:{rule}"


def resolved_key(rule: str) -> str:
    """The dedup key of a rule's resolve (sent only after its breach was)."""
    return f"resolved:{rule}"


def provider_key(provider: str) -> str:
    """One `provider_unreachable` per deploy and provider."""
    return f"provider_unreachable:{provider}"


def check_bug_key(check: str) -> str:
    """One `check_bug` per deploy and check."""
    return f"check_bug:{check}"


@dataclass(frozen=True, slots=True)
class Alert:
    """One notification's content.

    `rules` are dicts in the API's rule shape: name, source, metric, observed,
    baseline, threshold, detail and optionally link (`rule` is accepted for
    `name`, so the rollback body's breaches work as they are). Values are in base
    units (latency in seconds, rates as fractions); the template formats them.
    """

    event: AlertEvent
    environment: str
    version: str
    deploy_id: str
    reason: str = ""
    rules: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    previous_version: str | None = None
    commit: str | None = None
    detail: str = ""
    """Event-specific facts: the rollback's attempts and last status, the provider's error…"""
    provider: str | None = None
    """For `provider_unreachable`: which provider."""
    provider_answered: bool = False
    """For `provider_unreachable`: the provider answered, but not usably (a rejected key or
    query, an unreadable answer), so on-call looks at the configuration, not the network."""
    provider_not_yet: bool = False
    """With `provider_answered`: what it answered is that it has nothing yet (an environment
    with no event so far), which the first event ends: nothing to fix."""
    link: str | None = None
    """Where to look at the deploy (e.g. the API's `/v1/deploys/{id}` on a public address)."""
    rollback_target: RollbackTarget = "webhook"
    """For the rollback events: who was asked (`rollback.target`), named in the headline:
    on-call told the webhook refused looks at the wrong system when Vercel did."""
    replaced_by: str | None = None
    """For `rollback_failed`: the version of the newer deploy the rollback was given up for,
    unsent (`replaced_by_id` its id). Its headline and title say so instead of "roll back
    by hand, act now": that would undo the newer deploy, which its own window judges.
    For `rollback_delivered`: the newer deploy that took effect while its attempt was out,
    which the receiver may have rolled back too: its title and headline warn of it."""
    replaced_by_id: str | None = None
    replaced_sent: int = 0
    """With `replaced_by`: how many attempts went out before it was given up, and how many
    of those got no answer (`replaced_unanswered`), which the receiver may have acted on:
    its title and headline say so, where "NOT SENT" was untrue."""
    replaced_unanswered: int = 0
    unconfigured: bool = False
    """For `rollback_failed`: given up unsent because the environment, or its `rollback`,
    left the configuration (no agent can send it): its headline says so, not that the
    webhook refused it."""
    on_evidence: bool = True
    """For `passed`: every rule was shown within its bound (the sequential policy's default
    `pass_on: evidence`). False (the threshold policy, or `pass_on: no_failure`): it passed
    because no rule failed, and its headline says so, where on-call would read "within
    bounds" into a rule that lacked the evidence."""
    call: IntegrationCall | None = None
    """For `integration_failed`: which call was given up; its headline says what now
    waits on it and what to do by hand."""
    bug: bool = False
    """For `inconclusive`: a part of the agent (or a plugin) raised, alike, until the
    window was ended for it (`agent.windows.broken`): its title and headline say so, where
    "not shown within bounds … not every rule had the data" sent on-call to the deploy's
    evidence, the bug named only in the reason."""
    check: str | None = None
    """For `check_bug`: the check whose own bug ended runs of the window."""

    @property
    def sent_before(self) -> SentBefore:
        """`replaced_sent` and `replaced_unanswered` as one."""
        return SentBefore(self.replaced_sent, self.replaced_unanswered)

    @property
    def notify_type(self) -> NotifyType:
        if self.event == "rollback_delivered" and self.replaced_by is not None:
            return "failure"  # a human must look: the newer deploy may be rolled back
        return EVENTS[self.event].notify_type

    @classmethod
    def for_window(
        cls,
        window: DeployWindow,
        event: AlertEvent,
        *,
        reason: str = "",
        rules: Sequence[Mapping[str, Any]] = (),
        detail: str = "",
        provider: str | None = None,
        provider_answered: bool = False,
        provider_not_yet: bool = False,
        link: str | None = None,
        rollback_target: RollbackTarget = "webhook",
        replaced_by: DeployWindow | None = None,
        sent_before: SentBefore | None = None,
        unconfigured: bool = False,
        on_evidence: bool = True,
        call: IntegrationCall | None = None,
        bug: bool = False,
        check: str | None = None,
    ) -> Alert:
        """An alert about `window`, carrying its identity (id, environment, versions, commit)."""
        return cls(
            event=event,
            environment=window.environment,
            version=window.version,
            deploy_id=window.id,
            reason=reason,
            rules=tuple(rules),
            previous_version=window.previous_version,
            commit=window.commit,
            detail=detail,
            provider=provider,
            provider_answered=provider_answered,
            provider_not_yet=provider_not_yet,
            link=link,
            rollback_target=rollback_target,
            replaced_by=replaced_by.version if replaced_by is not None else None,
            replaced_by_id=replaced_by.id if replaced_by is not None else None,
            replaced_sent=sent_before.sent if sent_before is not None else 0,
            replaced_unanswered=sent_before.unanswered if sent_before is not None else 0,
            unconfigured=unconfigured,
            on_evidence=on_evidence,
            call=call,
            bug=bug,
            check=check,
        )


# -- the catalogue: what each event says, and how loudly ---------------------------------


def rule_name(rule: Mapping[str, Any]) -> str:
    """A rule's name in the API's shape (`name`) or the rollback body's (`rule`)."""
    return str(rule.get("name") or rule.get("rule") or "?")


def _names(alert: Alert) -> list[str]:
    return [rule_name(r) for r in alert.rules]


def _listed(alert: Alert) -> str:
    names = _names(alert)
    return ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")


def _with_rules(text: str) -> Callable[[Alert], str]:
    return lambda alert: text + (f" ({_listed(alert)})" if alert.rules else "")


def _requested_summary(alert: Alert) -> str:
    """A verdict's rollback names the rules that failed; one asked for by hand says so
    (its reason is in the body): the title read as the verdict's, after a pass."""
    if alert.reason.startswith(MANUAL_ROLLBACK_PREFIX):
        return "rollback requested by hand"
    return _with_rules("rollback requested")(alert)


def _breach_summary(alert: Alert) -> str:
    names = _names(alert)
    if len(names) == 1:
        return f"{names[0]} breached"
    return f"{len(names)} rules breached: {_listed(alert)}" if names else "rule breached"


@dataclass(frozen=True, slots=True)
class EventSpec:
    notify_type: NotifyType
    """apprise's type: `warning` (nothing decided yet), `failure` (a human must look),
    `info` (the remedy happened), `success` (all good)."""
    headline: str
    """The body's first paragraph, markdown."""
    summary: Callable[[Alert], str]
    """The title's short part, after `[postflight] <environment> <version>:`."""


PASSED_ON_NO_FAILURE_HEADLINE = (
    "**Deploy passed.** No rule failed through the window (this environment's analysis"
    " does not ask for evidence of a pass): a rule without the evidence to show it within"
    " its bound counted as passing (one with no data at all would have left the window"
    " inconclusive); the rules below say which."
)
PASSED_BY_STREAK_HEADLINE = (
    "**Deploy passed.** Not every rule was shown within its bound: {rules} passed by the"
    " threshold streak alone (no sequential test covers such a rule; too few rounds in a row"
    " past its bound to fail), which is no evidence that it holds{others}. The rules below"
    " say on what evidence."
)
"""`passed`'s headline, passing on evidence, when a rule passed by the streak (its evidence's
`policy` is `threshold`: `agent.analysis.policies.sequential`, a bare value's `min` or one
gone below 0): "Every rule was shown within its bound" claimed evidence it did not have."""
GROUP_HEADLINES: dict[AlertEvent, str] = {
    "breach": "**Rules breached.** The window keeps watching; the policy decides on a rollback.",
    "resolved": "**Resolved.** The rules are back within their bounds.",
}
"""A round's breaches (or resolves) told together (`agent.windows.alert_once`)."""
_FAILED_REQUESTED = "**Deploy failed: rollback requested**"
"""How a verdict's rollback request is headed (whatever its target); a manual one swaps
it for `_BY_HAND_REQUESTED` (`headline`)."""
_BY_HAND_REQUESTED = "**Rollback requested by hand**"
_STARTED_NOT_DONE = (
    " That starts the rollback; it does not say it is done: check that the previous version"
    " serves again."
)
"""How each delivered rollback's headline ends: the target's 2xx starts a rollback (Vercel's
takes seconds, a GitHub workflow minutes), and "Rollback delivered" alone reads as done
while the failed release may still serve (`agent.windows.foresight.ROLLBACK_SETTLE_S`)."""
_BY_HAND_SKIPPED = (
    "**Rollback requested by hand, not sent.** `rollback.dry_run` is on for this"
    " environment, so its rollback target was not called: roll back by hand if needed."
)


@dataclass(frozen=True, slots=True)
class FailedWords:
    """A FAILED rollback's headline kept in its two parts: what failed, and what to do by
    hand. A newer deploy taken effect since (`failed_rollback_headline`'s `deployed_since`)
    replaces the second where it is a rollback by hand, which would now undo that deploy;
    cutting it out of the joined headline failed on one that does not hold the phrase."""

    failed: str
    by_hand: str = "roll back by hand."
    rolls_back: bool = True
    """Whether `by_hand` is rolling back (a `rollback.then` follow-up's is its own step)."""

    @property
    def headline(self) -> str:
        return f"{self.failed}: {self.by_hand}"


FAILED_WORDS: dict[RollbackTarget, FailedWords] = {
    "webhook": FailedWords(
        "**Rollback FAILED.** The pipeline's webhook did not accept it, or could not be"
        " reached (the reason says which)"
    ),
    "vercel": FailedWords(
        "**Rollback FAILED.** Vercel did not accept it, or it could not be sent (the reason"
        " says which)"
    ),
    "github": FailedWords(
        "**Rollback FAILED.** The GitHub workflow dispatch was not accepted, or could not be"
        " sent (the reason says which)"
    ),
    "then": FailedWords(
        "**Rollback follow-up FAILED.** The rollback was delivered, but a `rollback.then`"
        " webhook did not accept its follow-up",
        "run that step by hand.",
        rolls_back=False,
    ),
}
"""`rollback_failed`'s headline by target, in its parts (`FailedWords`)."""

UNCONFIGURED_WORDS = FailedWords(
    "**Rollback FAILED: not sent.** This environment, or its `rollback`, is no longer in"
    " Postflight's configuration, so no agent will send the rollback it still owed",
    "roll back by hand if this deploy is still live.",
)
"""`rollback_failed`'s headline for a rollback given up that way (`Alert.unconfigured`)."""


EVENTS: dict[AlertEvent, EventSpec] = {
    "breach": EventSpec(
        "warning",
        "**Rule breached.** The window keeps watching; the policy decides on a rollback.",
        _breach_summary,
    ),
    "resolved": EventSpec(
        "success",
        "**Resolved.** The rule is back within its bounds.",
        lambda a: f"{_listed(a)} resolved" if a.rules else "resolved",
    ),
    "failed": EventSpec(
        "failure",
        "**Deploy failed.** This environment has no `rollback` configured (no webhook,"
        " Vercel or GitHub target), so nothing was asked to roll back: roll back by hand.",
        _with_rules("deploy failed"),
    ),
    "rollback_requested": EventSpec(
        "failure",
        f"{_FAILED_REQUESTED} from the pipeline's webhook.",
        _requested_summary,
    ),
    "rollback_skipped": EventSpec(
        "failure",
        "**Deploy failed.** No rollback was sent: `rollback.dry_run` is on for this"
        " environment. Roll back by hand if needed.",
        lambda a: (
            "rollback by hand skipped (dry run)"
            if a.reason.startswith(MANUAL_ROLLBACK_PREFIX)
            else _with_rules("deploy failed")(a) + ", rollback skipped (dry run)"
        ),
    ),
    "rollback_delivered": EventSpec(
        "info",
        "**Rollback delivered.** The pipeline's webhook accepted it." + _STARTED_NOT_DONE,
        lambda a: (
            delivered_past_summary(a.replaced_by)
            if a.replaced_by is not None
            else "rollback delivered"
        ),
    ),
    "rollback_failed": EventSpec(
        "failure",
        FAILED_WORDS["webhook"].headline,
        lambda a: (
            given_up_summary(a.replaced_by, a.sent_before, a.rollback_target)
            if a.replaced_by is not None
            else "ROLLBACK FAILED, act now"
        ),
    ),
    "passed": EventSpec(
        "success",
        "**Deploy passed.** Every rule was shown within its bound; the rules below say on"
        " what evidence.",
        lambda a: "deploy passed",
    ),
    "inconclusive": EventSpec(
        "warning",
        "**Inconclusive.** No rule failed, but not every rule had the data or the evidence"
        " to pass (the reason names them); the deploy was neither passed nor rolled back:"
        " it is live, unjudged, so check it yourself.",
        lambda a: (
            "inconclusive, a bug in the agent ended the window"
            if a.bug
            else f"inconclusive, {', '.join(held)} past its bound but not judged (agent overloaded)"
            if (held := held_regressions(a))
            else f"inconclusive, {past_their_bounds(past)}"
            if (past := unproven_regressions(a))
            else "inconclusive, not enough data or evidence to pass"
        ),
    ),
    "provider_unreachable": EventSpec(
        "warning",
        "**Provider unreachable.** Its rules are inconclusive while it cannot be read (a"
        " relative one until its baseline comes, too); that is never a reason to roll back.",
        lambda a: (
            f"provider {a.provider or '?'} "
            + ("answered, but not usably" if a.provider_answered else "unreachable")
        ),
    ),
    "integration_failed": EventSpec(
        "failure",
        "**A call to GitHub or Vercel was given up.** It was refused, or could not be sent"
        " through an hour of retries (the reason says which): do by hand what it did.",
        lambda a: INTEGRATION_SUMMARIES.get(a.call or "", "GitHub/Vercel call given up"),
    ),
    "check_bug": EventSpec(
        "warning",
        "**A check has a bug.** Its plugin raised what is not about the target (or answered"
        " what cannot be read) in runs of this window: those runs are no evidence about the"
        " deploy either way, left out of it, so the window is judged on fewer probes (a"
        " canary's baseline runs: against a smaller baseline), and a rule left with none"
        " is inconclusive. This alone never rolls back. Fix the plugin,"
        " or report its bug (the reason names the check, the exception and where).",
        lambda a: f"check {a.check or '?'} has a bug",
    ),
}

INTEGRATION_SUMMARIES: dict[str, str] = {
    "status": "GitHub deployment status NOT posted",
    "commit_status": "GitHub commit status NOT set",
    "gate": "protection rule NOT answered, answer it by hand",
    "approval": "Rolling Release stage NOT approved, approve it by hand",
    "approval_declined": "Rolling Release stage NOT approved by Postflight: approve it by"
    " hand if the window judged it",
}
"""`integration_failed`'s title, by `Alert.call`."""
_GIVEN_UP = (
    "Postflight was refused, or could not send it through an hour of retries (the reason"
    " says which), and will not try again"
)
INTEGRATION_HEADLINES: dict[str, str] = {
    "status": "**GitHub deployment status NOT posted.** " + _GIVEN_UP + ": the deployment"
    " still shows its last status, and a workflow or an environment's page that waits"
    " on it waits for good. Post the status by hand (the verdict is on the deploy page).",
    "commit_status": "**GitHub commit status NOT set.** " + _GIVEN_UP + ": the commit's"
    " `postflight/<environment>` status keeps its last state, and a branch protection"
    " that requires it blocks merging. Set it by hand (the verdict is on the deploy page).",
    "gate": "**GitHub protection rule NOT answered.** " + _GIVEN_UP + ": the job waiting"
    " on the environment's protection rule waits until GitHub's own timeout (30 days)."
    " Approve or reject the deployment by hand in GitHub (the run's Review deployments).",
    "approval": "**Vercel Rolling Release stage NOT approved.** " + _GIVEN_UP + ": the"
    " window passed, but the release waits at its stage. Approve the stage (or complete"
    " the release) by hand in Vercel.",
    "approval_declined": "**Vercel Rolling Release stage NOT approved by Postflight.** The"
    " window passed, but the stage now active may not be the one it judged: the stage was"
    " not noted as the window began, and the release changed since (the reason says how),"
    " so a person may have approved the judged one meanwhile. Postflight did not approve"
    " it, and the release waits at that stage. Approve the stage (or complete the release)"
    " by hand in Vercel if it was the one active when the window began; otherwise it was"
    " not judged.",
}
"""`integration_failed`'s headline, by `Alert.call`: what now waits, and what to do."""

_INCONCLUSIVE_WHILE = (
    " Its rules are inconclusive while it cannot be read (a relative one until its"
    " baseline comes, too); that is never a reason to roll back."
)
PROVIDER_ANSWERED_HEADLINE = (
    "**Provider answered, but not usably.** A rejected key or query, or an answer that"
    " cannot be read: fix the configuration or the provider's side; waiting will not help."
    + _INCONCLUSIVE_WHILE
)
"""`provider_unreachable`'s headline when the provider did answer (`Alert.provider_answered`)."""

PROVIDER_NOT_YET_HEADLINE = (
    "**Provider has no data here yet.** It answered that it has seen no event there so"
    " far (a new environment, say): not yet, rather than wrong; it comes with the first"
    " event." + _INCONCLUSIVE_WHILE
)
"""`provider_unreachable`'s headline when what it answered is "nothing yet"
(`Alert.provider_not_yet`)."""

UNCONFIGURED_HEADLINE = UNCONFIGURED_WORDS.headline

TARGET_HEADLINES: dict[tuple[AlertEvent, RollbackTarget], str] = {
    ("rollback_requested", "vercel"): f"{_FAILED_REQUESTED} from Vercel"
    " (back to the previous production deployment).",
    ("rollback_requested", "github"): f"{_FAILED_REQUESTED} through the"
    " GitHub rollback workflow (a workflow dispatch).",
    ("rollback_delivered", "vercel"): "**Rollback delivered.** Vercel accepted it."
    + _STARTED_NOT_DONE,
    ("rollback_delivered", "github"): "**Rollback delivered.** GitHub accepted the rollback"
    " workflow's dispatch." + _STARTED_NOT_DONE,
    **{("rollback_failed", target): words.headline for target, words in FAILED_WORDS.items()},
}
"""Headlines naming the rollback's real target (`EVENTS` words the webhook's)."""


RECEIVERS: dict[RollbackTarget, str] = {"vercel": "Vercel", "github": "GitHub"}
"""Who may have acted on an attempt whose answer never came, by target (else the receiver)."""


def sent_words(sent: SentBefore, target: RollbackTarget) -> str:
    """What of a rollback given up for a newer deploy went out before (`sent.sent` > 0), as
    it is: an attempt whose answer never came may have been acted on."""
    who = RECEIVERS.get(target, "the receiver")
    attempts = counted(sent.sent, "attempt") + " sent"
    if not sent.unanswered:
        return f"{attempts}, {'not accepted' if sent.sent == 1 else 'none accepted'}"
    them = "it" if sent.unanswered == 1 else "them"
    if sent.sent == 1:
        lost = "its answer never came"
    elif sent.unanswered == sent.sent:
        lost = "their answers never came"
    else:
        lost = f"{sent.unanswered} never answered"
    return f"{attempts}, {lost}; {who} may have acted on {them}"


def delivered_past_summary(version: str) -> str:
    """`rollback_delivered`'s title for a rollback delivered while the newer deploy
    `version` took effect (`delivered_past_headline`)."""
    return f"rollback delivered after {version} was deployed: check what serves"


def given_up_summary(version: str, sent: SentBefore, target: RollbackTarget) -> str:
    """`rollback_failed`'s title for a rollback given up for the newer deploy `version`:
    NOT SENT only when nothing went out."""
    if not sent.sent:
        return f"ROLLBACK NOT SENT, {version} deployed since"
    return f"ROLLBACK GIVEN UP, {version} deployed since: {sent_words(sent, target)}"


def delivered_past_headline(alert: Alert, quote: Callable[[str], str] = str) -> str:
    """`rollback_delivered`'s headline when a newer deploy took effect while its attempt was
    out (`Alert.replaced_by`): the receiver took it with the newer deploy live, and may
    have rolled back past it."""
    return delivered_past(
        (alert.replaced_by or "?", alert.replaced_by_id or "?"),
        alert.rollback_target,
        alert.previous_version,
        quote,
    )


def delivered_past(
    newer: tuple[str, str],
    target: RollbackTarget,
    previous_version: str | None,
    quote: Callable[[str], str] = str,
) -> str:
    """`delivered_past_headline` from its parts: the newer deploy's version and id, the
    rollback's target and the version it goes back to. The alert's headline and the deploy
    page's advice (`agent.web.view`) both."""
    version, deploy_id = quote(newer[0]), quote(newer[1])
    who = RECEIVERS.get(target, "The pipeline's webhook")
    to = f", to {quote(previous_version)}" if previous_version else ""
    return (
        f"**Rollback delivered after {version} ({deploy_id}) was deployed.** {who} accepted"
        f" it while {version} was already out: it may have rolled back past {version}{to}."
        f" Check which version serves, and deploy {version} again if it was rolled back."
    )


def replaced_headline(
    version: str,
    deploy_id: str,
    sent: SentBefore | None = None,
    target: RollbackTarget = "webhook",
) -> str:
    """`rollback_failed`'s headline for a rollback given up for a newer deploy
    (`Alert.replaced_by`): nothing to roll back by hand, the newer deploy is judged; what
    went out before (`sent`) said as it is, and an attempt unanswered as one that may
    have rolled the newer deploy back."""
    undo = _undo(version)
    if sent is None or not sent.sent:
        return f"**Rollback NOT sent: {version} ({deploy_id}) was deployed since.** {undo}"
    words = sent_words(sent, target)
    head = f"**Rollback given up: {version} ({deploy_id}) was deployed since.** "
    if not sent.unanswered:
        return f"{head}{words[0].upper()}{words[1:]}. {undo}"
    return (
        f"{head}{words[0].upper()}{words[1:]}: if so, {version} may have been rolled back"
        f" too, so check that {version} is what serves, and deploy it again if not. {undo}"
    )


def failed_rollback_headline(
    target: RollbackTarget,
    *,
    replaced_by: tuple[str, str] | None = None,
    sent: SentBefore | None = None,
    unconfigured: bool = False,
    deployed_since: tuple[str, str] | None = None,
    back_to: str | None = None,
    quote: Callable[[str], str] = str,
) -> str:
    """What to do about a rollback that FAILED: roll back by hand, or not when a newer
    deploy (`replaced_by`: its version and id) went out since. The alert's headline and
    the deploy page's advice (`agent.web.view`) both, so they never say different things.

    `deployed_since`: a newer deploy (version, id) that took effect after a rollback that
    failed on its own (refused, its attempts spent): the page, read later, keeps the
    failure's words but not "roll back by hand", which would now undo that deploy; where
    it said the rollback was given up for it (or NOT sent), which was untrue. When it is
    of `back_to`, the version the rollback goes back to, the rollback was done another
    way (on-call deployed it, or the receiver's own rollback registered it): the page
    still said to roll back by hand."""
    if replaced_by is not None:
        return replaced_headline(quote(replaced_by[0]), quote(replaced_by[1]), sent, target)
    words = (
        UNCONFIGURED_WORDS if unconfigured else FAILED_WORDS.get(target, FAILED_WORDS["webhook"])
    )
    if deployed_since is None or not words.rolls_back:
        return words.headline
    version, deploy_id = quote(deployed_since[0]), quote(deployed_since[1])
    if deployed_since[0] == back_to:
        done = (
            "the version this rollback was to go back to: the rollback was done another way,"
            " and nothing is left to roll back by hand."
        )
    else:
        done = f"after this rollback was requested. {_undo(version)}"
    return f"{words.failed}. Since then {version} ({deploy_id}) was deployed, {done}"


def _undo(version: str) -> str:
    """Why not to roll back by hand once `version`, a newer deploy, took effect."""
    return (
        f"Rolling back now would undo {version}, so do not roll back by hand: {version}'s"
        " own window judges it."
    )


MANUAL_ROLLBACK_PREFIX = "manual rollback by "
"""How a manual rollback's `rollback_requested` reason begins (`manual rollback by
<token name>: <reason>`, worded with it where it is asked for,
`agent/windows/integrations.py`): the headline tells it from a verdict's by it, in a
claim stored before a crash too."""


def headline(alert: Alert, quote: Callable[[str], str] = str) -> str:
    """The body's first paragraph: the event's, in the words of its target or provider.
    `quote` shows text the agent did not write (a newer deploy's version) as it is.

    A rollback asked for by hand is not "Deploy failed": it may follow a window that
    passed, whose "Deploy passed" on-call read minutes before."""
    text = _headline(alert, quote)
    if alert.reason.startswith(MANUAL_ROLLBACK_PREFIX):
        if alert.event == "rollback_requested":
            return text.replace(_FAILED_REQUESTED, _BY_HAND_REQUESTED, 1)
        if alert.event == "rollback_skipped":  # a dry run's: nothing went to the target
            return _BY_HAND_SKIPPED
    return text


HELD_HEADLINE = (
    "**Inconclusive: a regression may be hidden.** The judge found {rules} past its bound,"
    " but the agent's own event loop was stalled while it probed (a busy host), so it"
    " cannot tell the service's fault from its own delay, and nothing was rolled back."
    " Check the service yourself; the reason gives the figures."
)
"""`inconclusive`'s headline when a rule the judge failed was held as the agent's own delay
(`agent.windows.overload`): "No rule failed" would tell on-call to look no further."""


BUG_HEADLINE = (
    "**Inconclusive: a bug in the agent ended the window.** A part of the agent (or a"
    " plugin) raised, where trying again would not help (the reason names it and the"
    " exception; the agent's log has its traceback): this says nothing about the deploy,"
    " which was neither passed nor rolled back. Check the deploy yourself, and report the bug."
)
"""`inconclusive`'s headline for a window ended as a bug (`Alert.bug`)."""


def passed_by_streak(alert: Alert) -> list[str]:
    """The rules of a `passed` alert on evidence that passed by the threshold streak."""
    if alert.event != "passed" or not alert.on_evidence:
        return []
    return [
        str(rule_name(r))
        for r in alert.rules
        if isinstance(r.get("evidence"), Mapping) and r["evidence"].get("policy") == "threshold"
    ]


FAILED_BREACH_HEADLINE = (
    "**{head}.** The window failed on {which}: its verdict, and the rollback if one is"
    " asked, come in their own alert."
)
"""`breach`'s headline when a rule it names failed: a failing rule fails the window in that
round under every policy, where "The window keeps watching" came beside (even after) the
rollback already asked for."""


def failed_breach(alert: Alert) -> str | None:
    """The headline of a `breach` alert naming a rule that failed; None otherwise."""
    if alert.event != "breach":
        return None
    failed = [str(rule_name(r)) for r in alert.rules if r.get("outcome") == "fail"]
    if not failed:
        return None
    if len(failed) == len(alert.rules):
        one = len(failed) == 1
        head, which = ("Rule failed", "it") if one else ("Rules failed", "them")
    else:
        head, which = "Rules breached", ", ".join(f"`{name}`" for name in failed)
    return FAILED_BREACH_HEADLINE.format(head=head, which=which)


def held_regressions(alert: Alert) -> list[str]:
    """The rules of an `inconclusive` alert the judge failed and the agent held as within
    its own delay (their evidence says `agent_overloaded`: only a held fail is so marked)."""
    if alert.event != "inconclusive":
        return []
    return [
        str(rule_name(r))
        for r in alert.rules
        if isinstance(r.get("evidence"), Mapping) and r["evidence"].get("agent_overloaded")
    ]


UNPROVEN_HEADLINE = (
    "**Inconclusive: a regression may be live.** {rules} ended {bounds}, "
    + SHORT_OF_EVIDENCE
    + " by the window's end, so nothing was rolled back and the deploy is live. Check the"
    " service yourself; the reason and the rules below give the figures."
)
"""`inconclusive`'s headline when a rule ended past its bound short of failing (a 3 s
window of 1 s rounds failing half its probes): "No rule failed, but not every rule had
the data or the evidence to pass" read as a quiet window short of probes."""


def unproven_regressions(alert: Alert) -> list[str]:
    """The rules of an `inconclusive` alert that ended past their bound short of failing:
    the sequential policy's warning or the threshold policy's streak too short for
    `failure_limit` (`common.breaching.unproven`, as the verdict's reason reads them)."""
    if alert.event != "inconclusive":
        return []
    return [
        rule_name(rule)
        for rule in alert.rules
        if unproven(str(rule.get("outcome")), rule.get("evidence")) is not None
    ]


def _bounds(rules: Sequence[str]) -> str:
    return "past its bound" if len(rules) == 1 else "past their bounds"


def _headline(alert: Alert, quote: Callable[[str], str]) -> str:
    if alert.event == "inconclusive" and alert.bug:
        return BUG_HEADLINE
    if held := held_regressions(alert):
        return HELD_HEADLINE.format(rules=", ".join(f"`{name}`" for name in held))
    if past := unproven_regressions(alert):
        names = ", ".join(f"`{name}`" for name in past)
        return UNPROVEN_HEADLINE.format(rules=names, bounds=_bounds(past))
    if alert.event == "provider_unreachable" and alert.provider_not_yet:
        return PROVIDER_NOT_YET_HEADLINE
    if alert.event == "provider_unreachable" and alert.provider_answered:
        return PROVIDER_ANSWERED_HEADLINE
    if alert.event == "rollback_failed":
        replaced = None
        if alert.replaced_by is not None:
            replaced = (alert.replaced_by, alert.replaced_by_id or "?")
        return failed_rollback_headline(
            alert.rollback_target,
            replaced_by=replaced,
            sent=alert.sent_before,
            unconfigured=alert.unconfigured,
            quote=quote,
        )
    if alert.event == "rollback_delivered" and alert.replaced_by is not None:
        return delivered_past_headline(alert, quote)
    if alert.event == "passed" and not alert.on_evidence:
        return PASSED_ON_NO_FAILURE_HEADLINE
    if failed := failed_breach(alert):
        return failed
    if streak := passed_by_streak(alert):
        others = (
            "; the others were shown within their bounds" if len(alert.rules) > len(streak) else ""
        )
        names = ", ".join(f"`{name}`" for name in streak)
        return PASSED_BY_STREAK_HEADLINE.format(rules=names, others=others)
    if alert.event == "integration_failed" and alert.call in INTEGRATION_HEADLINES:
        return INTEGRATION_HEADLINES[alert.call]
    if len(alert.rules) > 1 and alert.event in GROUP_HEADLINES:
        return GROUP_HEADLINES[alert.event]
    spec = EVENTS[alert.event].headline
    return TARGET_HEADLINES.get((alert.event, alert.rollback_target), spec)


NOTIFY_TYPES: dict[AlertEvent, NotifyType] = {e: spec.notify_type for e, spec in EVENTS.items()}
