"""Chart geometry for the deploy page: series in, SVG coordinates and text out.
Pure: no I/O, no clock, no markup (the templates draw, with autoescape).

Server-rendered SVG rather than a charting library: the page then works with
JavaScript off, weighs a few kilobytes, loads nothing from anywhere, and each chart
carries its own text alternative and data table; a live update re-renders the same
markup on the server, so there is one drawing code path, not two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from agent.analysis.stats import percentiles
from common.words import counted, odds_number

WIDTH = 640
HEIGHT = 200
LEFT = 64
RIGHT = 16
TOP = 14
BOTTOM = 30
LABEL_HEIGHT = 13.0
"""Vertical room a reference line's label takes (11 px text, 13 px on a phone)."""
MARKER_ROOM = 6.0
"""Width a point's marker takes (a circle of radius 3): more points than the plot has room
for so are not each marked (`Chart.markers`)."""


Point = tuple[float, float, str, bool]
"""A point: x, y, what it says (its tooltip and the text alternative), and whether it is
past a bound. A plain tuple, not a class: the collector stops tracking a tuple of numbers
and strings, and tracks an instance for good; a page of 720 rounds of 50 rules draws
72,000 points, held until the page is rendered, and each full pass of the collector over
them (in the build's thread, holding the GIL) held the loop that times the probes."""


@dataclass(frozen=True, slots=True)
class Line:
    """A horizontal reference line (baseline, bound, threshold)."""

    y: float
    kind: str
    """`baseline`, `bound` or `threshold`: the template's stroke style, never colour alone."""
    label: str
    label_y: float = 0.0
    """Where its label's text sits: just above the line, unless another line's label is
    there (`_spread_labels`)."""


@dataclass(frozen=True, slots=True)
class Band:
    """A horizontal interval (the effect's confidence band, the tolerance)."""

    x1: float
    x2: float
    y: float
    height: float
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    label: str


@dataclass(slots=True)
class Chart:
    title: str
    description: str
    """The text alternative: what the chart shows, in words."""
    kind: str
    width: int = WIDTH
    height: int = HEIGHT
    series: list[list[Point]] = field(default_factory=list)
    series_kinds: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_label: str = ""
    y_label: str = ""
    legend: list[tuple[str, str]] = field(default_factory=list)
    """(kind, words) for each thing drawn: the key shows its stroke and says what it is."""

    @property
    def plot(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the plotting area."""
        return LEFT, TOP, self.width - RIGHT, self.height - BOTTOM

    def markers(self, points: Sequence[Point]) -> list[Point]:
        """The points drawn as markers, each with its tooltip: every one while the plot
        has room to tell them apart; past that (a 12 h window at 60 s: 720 rounds on 560
        px), the line carries the series, and only the points past a bound (squares, as
        the legend says) and the latest are marked. Every round's circle and tooltip,
        drawn on top of each other, made 50 rules' page 11 MB, fetched again by every
        open page on each round; each round's value stays in the rounds table."""
        left, _, right, _ = self.plot
        if len(points) * MARKER_ROOM <= right - left:
            return list(points)
        return [p for p in points[:-1] if p[3]] + list(points[-1:])

    @staticmethod
    def path(points: Sequence[Point]) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)


class Scale:
    """Maps a value range onto a pixel range (linear or log10)."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, *, log: bool = False) -> None:
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi - lo < 1e-12:
            lo, hi = lo - 1.0, hi + 1.0
        self.lo, self.hi, self.p0, self.p1, self.log = lo, hi, p0, p1, log

    def __call__(self, value: float) -> float:
        v = math.log10(max(value, 1e-300)) if self.log else value
        return self.p0 + (v - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round numbers spanning [lo, hi]."""
    if hi - lo <= 0:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _round_ticks(rounds: Sequence[int], x: Scale) -> list[Tick]:
    if not rounds:
        return []
    stride = max(1, math.ceil(len(rounds) / 10))
    return [Tick(x(n), str(n)) for n in rounds[::stride]]


def _spread_labels(lines: list[Line], top: float, bottom: float) -> list[Line]:
    """Each horizontal line's label just above it, moved apart where two lines lie within
    a label's height of each other (a baseline of 9.89% under a bound of 10% wrote both
    labels on one spot), and kept inside the plot."""
    flat = sorted((line for line in lines if line.kind != "zero"), key=lambda line: line.y)
    rows = [line.y - 4 for line in flat]
    for i in range(1, len(rows)):  # downwards: each label at least a label below the last
        rows[i] = max(rows[i], rows[i - 1] + LABEL_HEIGHT)
    if rows:
        rows[-1] = min(rows[-1], bottom - 2)
    for i in range(len(rows) - 2, -1, -1):  # then up from the plot's bottom edge
        rows[i] = min(rows[i], rows[i + 1] - LABEL_HEIGHT)
    placed = {
        id(line): max(row, top + LABEL_HEIGHT - 4) for line, row in zip(flat, rows, strict=True)
    }
    return [replace(line, label_y=placed.get(id(line), line.y - 4)) for line in lines]


def rounds_chart(
    title: str,
    observed: Sequence[tuple[int, float | None]],
    *,
    fmt: object,
    baseline: float | None,
    bounds: Sequence[tuple[str, float]],
    breach: Sequence[bool] = (),
    y_label: str = "",
) -> Chart:
    """Observed value per round with the baseline (dashed) and each bound (solid, labelled)."""
    format_value = fmt if callable(fmt) else str
    chart = Chart(title=title, description="", kind="rounds", x_label="round", y_label=y_label)
    left, top, right, bottom = chart.plot
    numbers = [n for n, _ in observed]
    values = [v for _, v in observed if v is not None]
    refs = [b for _, b in bounds] + ([baseline] if baseline is not None else [])
    everything = values + refs
    lo = min([0.0, *everything])
    hi = max(everything) if everything else 1.0
    hi = hi * 1.12 if hi > 0 else 1.0
    x = Scale(min(numbers, default=1) - 0.5, max(numbers, default=1) + 0.5, left, right)
    y = Scale(lo, hi, bottom, top)
    points: list[Point] = []
    for i, (n, v) in enumerate(observed):
        if v is None:
            continue
        bad = breach[i] if i < len(breach) else False
        text = f"round {n}: {format_value(v)}" + (" (past the bound)" if bad else "")
        points.append((x(n), y(v), text, bool(bad)))
    chart.series.append(points)
    chart.series_kinds.append("observed")
    if baseline is not None:
        chart.lines.append(Line(y(baseline), "baseline", f"baseline {format_value(baseline)}"))
    for label, value in bounds:
        chart.lines.append(Line(y(value), "bound", f"{label} {format_value(value)}"))
    chart.lines = _spread_labels(chart.lines, top, bottom)
    chart.x_ticks = _round_ticks(numbers, x)
    chart.y_ticks = [Tick(y(t), str(format_value(t))) for t in nice_ticks(lo, hi)]
    chart.legend = [("observed", "observed per round")]
    if baseline is not None:
        chart.legend.append(("baseline", "baseline (dashed)"))
    if bounds:
        chart.legend.append(("bound", "bound (solid)"))
    if any(breach for *_, breach in points):
        chart.legend.append(("breach", "past the bound (square)"))
    seen = "; ".join(label for _, _, label, _ in points[-12:]) or "no data yet"
    refs_text = ", ".join(line.label for line in chart.lines) or "no baseline or bound"
    breaches = sum(breach for *_, breach in points)
    chart.description = (
        f"{title}: {counted(len(points), 'round')} with data ({seen})."
        f" Reference lines: {refs_text}."
        + (f" {counted(breaches, 'round')} past the bound." if breaches else "")
    )
    return chart


def evidence_chart(
    title: str,
    ratios: Sequence[tuple[int, float | None]],
    needed: float | None,
    needs: Mapping[int, float] | None = None,
) -> Chart:
    """The e-value (likelihood ratio) per round on a log scale, toward its threshold (the
    latest round's, `needed`). `needs`: each round's own threshold, as stored: a round shows
    the more advanced of a rule's run from the deploy (1 / alpha) and its e-detector
    (rounds / alpha), so the bar can change within the window; each point is read against
    its own, and the change is said (a page showed 1.5e+03 at round 1, the verdict 45,000
    needed at round 14, with nothing to say why)."""
    own = {n: needs.get(n, needed) if needs else needed for n, _ in ratios}
    changed = len({v for v in own.values() if v}) > 1
    chart = Chart(
        title=title, description="", kind="evidence", x_label="round", y_label="e-value (log)"
    )
    left, top, right, bottom = chart.plot
    numbers = [n for n, _ in ratios]
    values = [max(v, 1e-6) for _, v in ratios if v is not None]
    refs = [needed] if needed else []
    lo = min([1.0, *values]) / 2
    hi = max([*values, *refs, 10.0]) * 3
    x = Scale(min(numbers, default=1) - 0.5, max(numbers, default=1) + 0.5, left, right)
    y = Scale(lo, hi, bottom, top, log=True)
    points = [
        (
            x(n),
            y(max(v, 1e-6)),
            f"round {n}: e-value {odds_number(v)}"
            + (f" of {odds_number(need)} needed" if changed and need else ""),
            bool(need and v >= need),
        )
        for n, v in ratios
        if v is not None
        for need in [own[n]]
    ]
    chart.series.append(points)
    chart.series_kinds.append("evidence")
    chart.lines.append(Line(y(1.0), "baseline", "no evidence (1)"))
    if needed:
        chart.lines.append(Line(y(needed), "threshold", f"threshold {odds_number(needed)}"))
    chart.lines = _spread_labels(chart.lines, top, bottom)
    chart.x_ticks = _round_ticks(numbers, x)
    chart.legend = [("evidence", "e-value per round"), ("baseline", "1: no evidence (dashed)")]
    if needed:
        chart.legend.append(("bound", "threshold (solid)"))
    decades = range(math.ceil(math.log10(lo)), math.floor(math.log10(hi)) + 1)
    stride = max(1, math.ceil(len(decades) / 5))
    chart.y_ticks = [Tick(y(10.0**d), f"{10.0**d:g}") for d in list(decades)[::stride]]
    last = points[-1][2] if points else "no evidence yet"
    chart.description = f"{title}: e-value per round on a log scale; latest {last}; " + (
        f"the rule fails when it reaches {odds_number(needed)}." if needed else "no threshold."
    )
    if changed:
        chart.description += _bars_said(own, needed)
    return chart


def _bars_said(own: Mapping[int, float | None], needed: float | None) -> str:
    """The rounds whose threshold was not the latest one, and why thresholds differ."""
    spans: list[tuple[int, int, float]] = []
    for n, need in sorted(own.items()):
        if not need or need == needed:
            continue
        if spans and spans[-1][2] == need and spans[-1][1] == n - 1:
            spans[-1] = (spans[-1][0], n, need)
        else:
            spans.append((n, n, need))
    earlier = ", ".join(
        f"round {a} needed {odds_number(need)}"
        if a == b
        else f"rounds {a}-{b} needed {odds_number(need)}"
        for a, b, need in spans
    )
    return (
        f" Its bar changed: {earlier}; each round shows the more advanced of the rule's"
        " two runs, the one from the deploy (its bar 1 / alpha) and its e-detector of a"
        " regression that may begin at any round (its bar the window's rounds / alpha)."
    )


def band_chart(title: str, interval: tuple[float, float], tolerance: float) -> Chart:
    """The effect's confidence band against the tolerance (±tolerance around no change)."""
    chart = Chart(title=title, description="", kind="band", height=90, x_label="relative effect")
    left, top, right, bottom = chart.plot
    lo_v, hi_v = interval
    span = max(abs(lo_v), abs(hi_v), abs(tolerance)) * 1.2 or 1.0
    x = Scale(-span, span, left, right)
    mid = (top + bottom) / 2
    chart.bands.append(
        Band(
            x(-tolerance),
            x(tolerance),
            top,
            bottom - top,
            "tolerance",
            f"tolerance ±{tolerance:.0%}",
        )
    )
    chart.bands.append(
        Band(x(lo_v), x(hi_v), mid - 8, 16, "interval", f"effect {lo_v:+.1%} to {hi_v:+.1%}")
    )
    chart.lines.append(Line(x(0.0), "zero", "no change"))
    chart.legend = [("tolerance", "tolerance (shaded)"), ("interval", "confidence band (bar)")]
    chart.x_ticks = [Tick(x(t), f"{t:+.0%}") for t in nice_ticks(-span, span)]
    inside = -tolerance <= lo_v and hi_v <= tolerance
    beyond = lo_v > tolerance or hi_v < -tolerance
    where = (
        "inside the tolerance" if inside else "beyond the tolerance" if beyond else "overlapping it"
    )
    chart.description = (
        f"{title}: the effect's confidence band runs from {lo_v:+.1%} to {hi_v:+.1%}, "
        f"{where} of ±{tolerance:.0%}."
    )
    return chart


def _quantiles(values: Sequence[float], points: int = 40) -> list[tuple[float, float]]:
    """The curve's (quantile, share) points, each quantile the judge's (`stats.percentiles`,
    interpolated between ranks) as a round's figure on the page is: the nearest rank read
    a round's p95 as 28 ms beside its 29 ms in the rounds table."""
    shares = [i / points for i in range(points + 1)]
    return list(zip(percentiles(values, shares), shares, strict=False))


def distribution_chart(
    title: str,
    new: Sequence[float],
    baseline: Sequence[float],
    fmt: object,
    judged: Mapping[float, float] | None = None,
) -> Chart:
    """Cumulative distributions of the new release's latencies and the baseline's.
    `judged`: the judge's figure of the new release at a share (its rule's percentile), put
    in place of the chart's own there, so the chart says the figure the page, the alerts
    and the CLI say."""
    format_value = fmt if callable(fmt) else str
    chart = Chart(
        title=title,
        description="",
        kind="distribution",
        x_label="latency",
        y_label="share of requests at or below",
    )
    left, top, right, bottom = chart.plot
    curves = {"new": _quantiles(new), "baseline": _quantiles(baseline)}
    said = judged or {}
    curves["new"] = [(said.get(q, v), q) for v, q in curves["new"]]
    everything = [v for curve in curves.values() for v, _ in curve]
    x = Scale(0.0, (max(everything) if everything else 1.0) * 1.05, left, right)
    y = Scale(0.0, 1.0, bottom, top)
    for kind, curve in curves.items():
        chart.series.append(
            [(x(v), y(q), f"{kind} p{q * 100:.0f}: {format_value(v)}", False) for v, q in curve]
        )
        chart.series_kinds.append(kind)
    chart.legend = [("observed", "new release (solid)"), ("baseline", "baseline (dashed)")]
    chart.x_ticks = [Tick(x(t), str(format_value(t))) for t in nice_ticks(0.0, x.hi)]
    chart.y_ticks = [Tick(y(t), f"{t:.0%}") for t in (0.0, 0.25, 0.5, 0.75, 1.0)]

    def pct(curve: list[tuple[float, float]], q: float) -> str:
        if not curve:
            return "n/a"
        return str(format_value(min(curve, key=lambda vq: abs(vq[1] - q))[0]))

    chart.description = f"{title}: " + "; ".join(
        f"{kind} ({counted(len(values), 'sample')}) p50 {pct(curves[kind], 0.5)}, "
        f"p95 {pct(curves[kind], 0.95)}"
        for kind, values in (("new", new), ("baseline", baseline))
    )
    return chart
