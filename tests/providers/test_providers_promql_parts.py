"""Which parts of a PromQL query may be taken as 0 (`agent.providers.promql_parts`)."""

from __future__ import annotations

import pytest

from agent.providers import promql_parts

RATIO = 'sum(rate(x_total{job="web",code=~"5.."}[1m])) / sum(rate(x_total{job="web"}[1m]))'


def selectors(query: str) -> list[promql_parts.Selector]:
    expr = promql_parts.parse(query)
    assert expr is not None
    found = promql_parts.selectors_of(expr)
    assert found is not None
    return found


def test_the_5xx_selector_is_the_jobs_filtered_further() -> None:
    five, job = selectors(RATIO)
    assert five.text == 'x_total{job="web",code=~"5.."}'
    assert job.text == 'x_total{job="web"}'
    assert job.widens(five) and not five.widens(job) and not job.widens(job)


def test_another_metric_never_widens() -> None:
    five, other = selectors('sum(rate(x_total{code="500"}[1m])) / sum(rate(y_total[1m]))')
    assert not other.widens(five)


def test_the_empty_part_is_0_at_its_sum() -> None:
    expr = promql_parts.parse(RATIO)
    assert expr is not None
    assert promql_parts.with_zeros(expr, {'x_total{job="web",code=~"5.."}'}) == (
        '(sum(rate(x_total{job="web",code=~"5.."}[1m])) or  vector(0))'
        ' / sum(rate(x_total{job="web"}[1m]))'
    )


@pytest.mark.parametrize(
    "query",
    [
        # by labels: vector(0) has none, so it would match nothing
        'sum by (code) (rate(x_total{code="500"}[1m])) / sum(rate(x_total[1m]))',
        # an average of no series is not 0
        'avg(rate(x_total{code="500"}[1m])) / sum(rate(x_total[1m]))',
        # no aggregation around it
        'rate(x_total{code="500"}[1m])',
        # a quote in a value: the parser's printer would not escape it
        'sum(rate(x_total{code="500",path="a\\"b"}[1m])) / sum(rate(x_total[1m]))',
    ],
)
def test_no_0_where_it_would_not_be_the_queries_own(query: str) -> None:
    expr = promql_parts.parse(query)
    assert expr is not None
    empty = next(s.text for s in selectors(query) if s.name == "x_total" and s.matchers)
    assert promql_parts.with_zeros(expr, {empty}) is None


def test_what_the_parser_refuses_is_left_unexplained() -> None:
    assert promql_parts.parse("sum(rate(x[1m]") is None
    for query in ('x{a="1" or b="2"}', "sum(rate(x[5m] offset 1w))", "sum(x @ 100)"):
        expr = promql_parts.parse(query)
        assert expr is not None and promql_parts.selectors_of(expr) is None, query
