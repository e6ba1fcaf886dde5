"""Alert titles and markdown bodies. Pure: no I/O, no clock.

Written for the person paged at 3 a.m.: the title says where and what in one
line (`[postflight] production v2.4.1: rollback requested`), the body names each
rule with observed vs baseline vs threshold in human units (latency in ms, rates
in %), the reason, and the deploy id to look up. Markdown that every apprise
target renders or degrades gracefully: paragraphs, bold, code spans and a
bullet list, no tables. Secrets are removed by the notifier's redactor, which
runs over the alert's text before it is rendered and over the rendered text.

Text the agent did not write (a target's answer quoted in a check's detail, a
provider's error, a pipeline's version or commit) is shown as it is: its markup
is escaped (`_text`, `_code`), so it cannot add a link or an HTML tag to the alert
(apprise renders the markdown as HTML for e-mail, where a proxy's error page came
out as a live link that swallowed the rest of the body). Links are written as
autolinks (`<https://…>`), so the plain-text part of an e-mail still shows them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.analysis.describe import odds_number
from alerting.events import EVENTS, Alert, headline, rule_name
from common.redaction import visible
from common.units import bounds_in_units, format_value
from common.words import counted

TITLE_PREFIX = "[postflight] "


def summary(alert: Alert) -> str:
    """The short part of the title, after `[postflight] <environment> <version>:`."""
    spec = EVENTS.get(alert.event)
    if spec is None:
        raise AssertionError(f"unknown alert event {alert.event!r}")
    return spec.summary(alert)


def title(alert: Alert) -> str:
    """`[postflight] <environment> <version>: <summary>`, one line. The version as it was
    registered (printable, on one line already), spaces and all: a title squeezed whole
    did not begin with it; the summary's whitespace is squeezed. A line break a version
    from elsewhere (a provider's event) might hold is a space."""
    version = " ".join(alert.version.splitlines())
    return f"{TITLE_PREFIX}{alert.environment} {version}: {' '.join(summary(alert).split())}"


def markdown_title(title: str) -> str:
    """`title` for a channel whose apprise plugin puts it atop the markdown body
    (Mattermost, Rocket.Chat, Telegram, Google Chat: a title length of 0; Discord's
    message), which reads as markdown: what follows the prefix is escaped as the body's
    quoted text is (`_text`). Elsewhere a title is text (an e-mail's subject, a json://
    sink's `title`, read by a machine) and stays as `title` made it: `[notes](http://…)`
    in a version was a link in chat, and `@channel` paged the channel."""
    rest = title.removeprefix(TITLE_PREFIX)
    return title[: len(title) - len(rest)] + _text(rest)


_JOINERS = frozenset("\u200c\u200d")
"""Zero-width (non-)joiners: how emoji sequences and Persian are written, which the API
takes in a version (`agent.api.models`); they reorder and hide nothing."""


def _one_line(text: Any) -> str:
    """Text on one line, each character that is not printable but a joiner written as its
    escape (`common.redaction.visible`): a webhook's refusal put a terminal's clear-screen
    and a right-to-left override into the alert, raw in chat, e-mail and json:// alike."""
    line = " ".join(str(text).split())
    if line.isprintable():
        return line
    return "".join(c if c in _JOINERS else visible(c) for c in line)


_MARKUP = re.compile(r"[\\`\[\]<]|\*+|_+")
"""What lets text open a link, an HTML tag, a code span or emphasis in markdown (and the
escape)."""


_LESS_OR_EQUAL = re.compile(r"=(?:\s|$)")


def _escaped(match: re.Match[str]) -> str:
    """A backslash before each markup character; but those that open nothing stay as
    they are: stars between spaces (the redaction mask `***`), underscores inside a word
    (`feature_flag`), a bracket not before `(`, `[` or `:` (`api_tokens[0]`), a `<` before
    a space or `= ` (`p95 <= 42ms`). A json:// sink gets the markdown as it is (apprise
    passes it through) and a chat that shows markdown raw shows it so: there, each
    backslash read as a stray one."""
    run, text = match.group(0), match.string
    before = text[match.start() - 1] if match.start() else " "
    after = text[match.end()] if match.end() < len(text) else " "
    if run == "[" or (run == "]" and after not in "([:"):
        return run  # a link or its definition needs `](`, `][` or `]:`: one escaped, none
    if run == "<" and (after.isspace() or _LESS_OR_EQUAL.match(text, match.end())):
        return run  # no tag, autolink or e-mail link begins `< ` or `<= `
    if run[0] == "*" and before.isspace() and after.isspace():
        return run
    if run[0] == "_" and before.isalnum() and after.isalnum():
        return run
    return "".join("\\" + c for c in run)


_MENTION = re.compile(r"(?<![\w@])@(?=(?:channel|here|all|everyone)\b)", re.IGNORECASE)
"""An `@` that pages a whole channel (Mattermost, Rocket.Chat, Discord, Teams; Slack's
own `<!here>` is escaped as markup already)."""

ZERO_WIDTH_SPACE = "\u200b"


_REFERENCE = re.compile(r"&(?=#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)")
"""An `&` that begins a character reference (`&amp;`, `&#38;`, `&lt;`), which markdown
decodes outside code spans, as HTML does; a bare `&` (`R&D`) is text already."""


def _text(text: Any) -> str:
    """Text on one line, shown as it is: its markup characters escaped (apprise's
    markdown takes a backslash before any ASCII punctuation). `*hotfix*` in a version
    and a traceback's `__init__.py` came out italic and bold, the characters gone.
    An `&` that begins a character reference is written `&amp;` (a backslash does not
    keep Python-Markdown from decoding `\\&amp;`): a version `v2 &amp; x` read `v2 & x`
    in an e-mail's HTML and text and in chat. A channel-wide mention (`@channel`, `@here`,
    `@all`, `@everyone`) gets a zero-width space after its `@`, which chat shows as it was
    and pages no one with: a version or a webhook's refusal naming one paged a whole
    Mattermost channel."""
    escaped = _MARKUP.sub(_escaped, _one_line(text))
    return _MENTION.sub("@" + ZERO_WIDTH_SPACE, _REFERENCE.sub("&amp;", escaped))


def _code(text: Any) -> str:
    """Text on one line as a code span, whatever backticks it holds; a channel-wide mention
    broken as in `_text` (a chat may look for mentions in code spans too)."""
    value = _MENTION.sub("@" + ZERO_WIDTH_SPACE, _one_line(text))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _link(url: Any) -> str:
    """An autolink: the URL itself is what shows, also in an e-mail's plain-text part
    (apprise's text of `[Open the deploy](…)` kept the words and dropped the URL)."""
    return f"<{_one_line(url).replace('>', '%3E').replace(' ', '%20')}>"


def evidence_text(evidence: Any) -> str:
    """The statistics behind a judgement, briefly: test, likelihood ratio, p-value,
    effect size, failing rounds — what makes an on-call engineer trust the call."""
    if not isinstance(evidence, Mapping):
        return ""
    parts = []
    if evidence.get("test"):
        parts.append(str(evidence["test"]))
    ratio = evidence.get("likelihood_ratio")
    if isinstance(ratio, int | float) and not isinstance(ratio, bool) and ratio >= 0:
        # as the reason's odds give it (`2,361`, `2.4 million`), not `2.36e+03` beside
        # its `evidence 2,361 to 1`
        if ratio == 0 or ratio >= 1:
            shown = odds_number(ratio)
        elif 1 / ratio < 1e9:  # `1/20`: as a fraction (`odds_number` has words past it)
            shown = f"1/{odds_number(1 / ratio)}"
        else:
            shown = "less than one in a billion"
        parts.append(f"likelihood ratio {shown}")
    p_value = evidence.get("p_value")
    if isinstance(p_value, int | float):
        parts.append(f"p-value {p_value:.2g}")
    effect = evidence.get("effect")
    if isinstance(effect, int | float):
        parts.append(f"effect {effect:+.0%}")
    rounds = evidence.get("failing_rounds")
    if isinstance(rounds, list) and rounds:
        parts.append(counted(len(rounds), "failing round"))
    return ", ".join(parts)


def rule_line(rule: Mapping[str, Any], why: str = "") -> str:
    """`- `name` (source, metric): observed **31%** vs baseline 0%, threshold max 0.05 (5%) —
    detail`; the detail left out when the alert's `why` is that rule's detail already (a breach's:
    on-call read the same sentence twice, one under the other)."""
    metric = rule.get("metric")
    source = rule.get("source")
    where = ", ".join(str(x) for x in (source, metric) if x)
    observed = format_value(metric if isinstance(metric, str) else None, rule.get("observed"))
    baseline = format_value(metric if isinstance(metric, str) else None, rule.get("baseline"))
    line = f"- `{rule_name(rule)}`" + (f" ({where})" if where else "")
    line += f": observed **{observed}** vs baseline {baseline}"
    threshold = rule.get("threshold")
    if threshold:
        line += f", threshold {_text(bounds_in_units(metric, threshold, as_written=True))}"
    outcome = rule.get("outcome")
    evidence_of = rule.get("evidence")
    if outcome == "pass" and isinstance(evidence_of, Mapping) and evidence_of.get("streak"):
        # a threshold streak short of `failure_limit`: not failed yet, and not a pass
        outcome = "breaching"
    breaching = isinstance(evidence_of, Mapping) and evidence_of.get("breaching")
    if outcome == "inconclusive" and breaching:
        # a sequential rule warned `rule breached`: `[inconclusive]` read as the pass side's
        outcome = "breaching"
    if outcome and outcome != "fail":
        line += f" [{outcome}]"
    detail = rule.get("detail")
    if detail and why != f"{rule_name(rule)}: {detail}":
        line += f" — {_text(detail)}"
    evidence = evidence_text(rule.get("evidence"))
    if evidence:
        line += f" (evidence: {_text(evidence)})"
    query = rule.get("query")
    if query:
        line += f"; query {_code(query)}"
    link = rule.get("link")
    if link:
        line += f" (details: {_link(link)})"
    return line


RULES_IN_FULL = 10
"""Rules an alert shows in full; past these (and two more) the rest are named on one
line: 30 rules failing alike made a 12 KB body of one line repeated, past a chat
service's message limit, and on-call reads the first few. The deploy page has them all."""


def _rule_lines(rules: Sequence[Mapping[str, Any]], why: str) -> list[str]:
    if len(rules) <= RULES_IN_FULL + 2:
        return [rule_line(r, why) for r in rules]
    rest = rules[RULES_IN_FULL:]
    names = ", ".join(_code(rule_name(r)) for r in rest)
    return [
        *(rule_line(r, why) for r in rules[:RULES_IN_FULL]),
        f"- and {len(rest)} more rules: {names} (all on the deploy page)",
    ]


def body(alert: Alert) -> str:
    """The markdown body: headline, reason, rules, event detail, then the deploy's identity."""
    parts = [headline(alert, _text)]
    if alert.reason:
        parts.append(f"**Why:** {_text(alert.reason)}")
    if alert.rules:
        parts.append("\n".join(["**Rules**", "", *_rule_lines(alert.rules, alert.reason)]))
    if alert.provider and alert.event == "provider_unreachable":
        parts.append(f"**Provider:** `{alert.provider}`")
    if alert.detail:
        parts.append(_text(alert.detail))
    deploy = f"Deploy {_code(alert.deploy_id)} · {_text(alert.environment)} · "
    if alert.previous_version:
        deploy += f"{_text(alert.previous_version)} → {_text(alert.version)}"
    else:
        deploy += _text(alert.version)
    if alert.commit:
        deploy += f" · commit {_code(alert.commit)}"
    parts.append(deploy)
    if alert.link:
        parts.append(f"Open the deploy: {_link(alert.link)}")
    return "\n\n".join(parts) + "\n"


def late_note(retry: int) -> str:
    """The paragraph a retry's alert ends with: it reaches on-call up to 3 minutes after
    the event ("rollback requested" read as news when the rollback had been delivered
    meanwhile), so it says it is late and where to look now."""
    return (
        f"_Sent late, on retry {retry}: this channel did not take the first attempt. The"
        " deploy page shows where the deploy is now._\n"
    )


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, redact) for v in value]
    return value


def render(alert: Alert, redact: Callable[[str], str] = str) -> tuple[str, str]:
    """(title, markdown body), both passed through `redact`. The alert's own text is
    redacted first too: escaping its markup could split a secret the redactor knows."""
    alert = dataclasses.replace(
        alert,
        reason=redact(alert.reason),
        detail=redact(alert.detail),
        version=redact(alert.version),
        previous_version=None if alert.previous_version is None else redact(alert.previous_version),
        commit=None if alert.commit is None else redact(alert.commit),
        replaced_by=None if alert.replaced_by is None else redact(alert.replaced_by),
        rules=tuple(_redacted(dict(rule), redact) for rule in alert.rules),
    )
    return redact(title(alert)), redact(body(alert))
