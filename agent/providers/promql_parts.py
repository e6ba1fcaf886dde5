"""The parts of a PromQL query behind an empty answer, and which of them may count as 0.

Why: a 5xx ratio, `sum(rate(x{job="web",code=~"5.."}[1m])) / sum(rate(x{job="web"}[1m]))`,
is an empty vector for a service that never answered a 5xx (no series has a 5xx code), so
the rule had no data all window and a healthy deploy ended `inconclusive`. Its numerator's
selector only filters its denominator's further (`code=~"5.."` beside the same `job`): when
the denominator's selector matches series and the numerator's none, the numerator is 0, and
the denominator's series are the evidence. A selector nothing in the query widens (a metric
misspelt, a job Prometheus does not scrape, a service with no traffic at all) stays empty.

The query is read with promql-parser (the Rust parser of GreptimeDB, `messense/
py-promql-parser`); the empty part becomes `(sum(…) or vector(0))` at the smallest `sum` or
`count` around it that keeps no labels (0 is what they are over no series). The parser's
printer does not escape quotes inside label values, so a query with one is not rewritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import promql_parser as promql

ZERO_AGGREGATES = frozenset({"sum", "count"})
"""Aggregations whose value over no series is 0 (an `avg` or `max` of nothing is not)."""


@dataclass(frozen=True)
class Selector:
    """One vector selector of a query, as `/api/v1/series` takes it (no offset, no `@`)."""

    text: str
    name: str | None
    matchers: frozenset[tuple[str, str, str]]
    """(label, operator, value) besides the metric name."""

    def widens(self, other: Selector) -> bool:
        """Whether `other` is this selector filtered further (the same metric, more
        matchers): `x{job="web"}` widens `x{job="web",code=~"5.."}`."""
        return self.name is not None and self.name == other.name and self.matchers < other.matchers


OPERATORS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def _selector(node: promql.VectorSelector) -> Selector | None:
    """None for what the series API cannot be asked exactly: `{a="1" or b="2"}`, or a
    selector of another time (`offset`, `@`), whose series the period's do not tell."""
    if node.matchers.or_matchers or node.offset is not None or node.at is not None:
        return None
    name = node.name
    matchers: list[tuple[str, str, str]] = []  # in the query's order, which the text keeps
    for matcher in node.matchers.matchers:
        op = OPERATORS[str(matcher.op).rsplit(".", 1)[-1]]
        if matcher.name == "__name__" and op == "=" and name is None:
            name = matcher.value
        elif (matcher.name, op, matcher.value) not in matchers:
            matchers.append((matcher.name, op, matcher.value))
    inner = ",".join(f"{label}{op}{json.dumps(value)}" for label, op, value in matchers)
    text = f"{{{inner}}}" if name is None else f"{name}{{{inner}}}" if inner else name
    return Selector(text, name, frozenset(matchers))


def parse(query: str) -> promql.Expr | None:
    """The query's tree; None where the parser differs from Prometheus (which took it)."""
    try:
        return promql.parse(query)
    except ValueError:  # its refusal of what Prometheus took: left unexplained
        return None


def _vector_selectors(expr: promql.Expr) -> list[promql.VectorSelector]:
    found: list[promql.VectorSelector] = []

    def visit(node: promql.Expr) -> None:
        if isinstance(node, promql.VectorSelector):
            found.append(node)

    promql.walk(expr, pre_visit=visit)
    return found


def selectors_of(expr: promql.Expr) -> list[Selector] | None:
    """The query's distinct selectors in order; None if one cannot be asked exactly."""
    selectors: dict[str, Selector] = {}
    for node in _vector_selectors(expr):
        selector = _selector(node)
        if selector is None:
            return None
        selectors.setdefault(selector.text, selector)
    return list(selectors.values())


def _keeps_no_labels(node: promql.AggregateExpr) -> bool:
    modifier = node.modifier
    return modifier is None or (str(modifier.type).endswith("By") and not list(modifier.labels))


def with_zeros(expr: promql.Expr, zero: set[str]) -> str | None:
    """The query with each part made only of the `zero` selectors (by text) as
    `(… or vector(0))` at its smallest label-less `sum`/`count`; None when a `zero`
    selector has no such aggregation around it, or the query cannot be printed exactly."""
    for node in _vector_selectors(expr):
        for matcher in node.matchers.matchers:
            if '"' in matcher.value or "\\" in matcher.value:
                return None  # the printer would not escape it
    covered: set[str] = set()

    def texts(node: promql.Expr) -> set[str] | None:
        found = [_selector(n) for n in _vector_selectors(node)]
        if any(s is None for s in found):
            return None
        return {s.text for s in found if s is not None}

    def post_visit(node: promql.Expr) -> promql.Expr | None:
        if not isinstance(node, promql.AggregateExpr) or not _keeps_no_labels(node):
            return None
        if str(node.op) not in ZERO_AGGREGATES:
            return None
        inside = texts(node)
        if not inside or not inside <= zero or inside <= covered:
            return None
        covered.update(inside)
        return promql.parse(f"({node} or vector(0))")

    rewritten = promql.transform(expr, post_visit=post_visit)
    if covered != zero:
        return None
    return str(rewritten)
