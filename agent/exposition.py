"""`GET /metrics` without holding the rounds back, however many environments there are.

At 5,000 environments one exposition is ~120,000 lines. prometheus_client 0.26 builds a
sample tuple per line and sorts and escapes every line's labels (~16 µs a line here: 1.5 s
of the event loop per scrape, every round due meanwhile late); in a worker thread it is no
better, the loop waiting for the interpreter lock at every turn (5,000 windows @10 s
scraped every 15 s, load 5: lag p99 2.2 s either way). So the agent's own labelled
counters, gauges and histograms are written here, on the loop, a slice of children at a
time with the loop free between slices, each child's label text made once per scrape;
anything else in the registry (build info, the collector's pauses, collectors others
register) and the OpenMetrics format go through the library. `tests/api/test_exposition.py`
holds the text equal to the library's, line for line. Reads the metrics' values only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_go = cast(Callable[[float], str], floatToGoString)
"""A value as Go (and Prometheus) writes it: `1.0`, `+Inf`, `NaN`."""

SLICE = 100
"""Children written between two turns of the loop (16 lines each for a histogram)."""

Family = Counter | Gauge | Histogram


class Exposition:
    """Renders the registry; scrapes that arrive while a rendering of the same format and
    names is under way get its bytes instead of a second one."""

    def __init__(self, registry: CollectorRegistry, own: Iterable[Family] = ()) -> None:
        self._registry = registry
        self._own = [m for m in own if _writable(m)]
        self._pending: dict[tuple[str, tuple[str, ...]], asyncio.Future[bytes]] = {}

    async def render(self, accept: str, names: tuple[str, ...] = ()) -> tuple[bytes, str]:
        """(body, content type) for an `Accept` header and optional `name[]` filters."""
        encoder, content_type = choose_encoder(accept)
        key = (content_type, names)
        pending = self._pending.get(key)
        if pending is None:
            if encoder is generate_latest and not names:  # the classic text format, 0.0.4
                pending = asyncio.ensure_future(self._text())
            else:  # rare: a filtered or OpenMetrics scrape, rendered whole by the library
                registry = self._registry.restricted_registry(names) if names else self._registry
                pending = asyncio.ensure_future(asyncio.to_thread(encoder, registry))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        # shielded: a scraper that hangs up does not cancel the others' rendering
        return await asyncio.shield(pending), content_type

    async def _text(self) -> bytes:
        parts: list[bytes] = []
        for metric in self._own:
            for chunk in _family_text(metric):
                parts.append(chunk.encode())
                await asyncio.sleep(0)
        parts.append(generate_latest(_Others(self._registry, self._own)))
        return b"".join(parts)


class _Others(Collector):
    """The registry without the families written by hand (prometheus_client keeps its
    collectors in `_collector_to_names`; it has no public way to leave some out)."""

    def __init__(self, registry: CollectorRegistry, own: list[Family]) -> None:
        self._registry, self._own = registry, {id(m) for m in own}

    def collect(self) -> Iterator[Any]:
        for collector in list(self._registry._collector_to_names):
            if id(collector) not in self._own:
                yield from collector.collect()


def _writable(metric: object) -> bool:
    """A labelled counter, gauge or histogram whose children hold plain values."""
    return isinstance(metric, Counter | Gauge | Histogram) and bool(metric._labelnames)


def _family_text(metric: Family) -> Iterator[str]:
    """The family's `# HELP`/`# TYPE` lines and samples as the library writes them, in
    slices of `SLICE` children."""
    name = metric._name
    kind = metric._type
    exposed = f"{name}_total" if kind == "counter" else name
    doc = metric._documentation.replace("\\", r"\\").replace("\n", r"\n")
    lines = [f"# HELP {exposed} {doc}\n# TYPE {exposed} {kind}\n"]
    with metric._lock:
        children: list[tuple[Any, Any]] = list(metric._metrics.items())
    labelnames = metric._labelnames
    upper: list[float] = metric._upper_bounds if isinstance(metric, Histogram) else []
    bounds = [_go(b) for b in upper]
    with_sum = bool(upper) and upper[0] >= 0  # a histogram of negatives has no _sum
    for start in range(0, len(children), SLICE):
        for values, child in children[start : start + SLICE]:
            pairs = sorted(zip(labelnames, map(_escape, values), strict=True))
            labels = ",".join(f'{k}="{v}"' for k, v in pairs)
            if kind == "histogram":
                lines.extend(_histogram_lines(name, pairs, labels, child, bounds, with_sum))
            else:
                lines.append(f"{exposed}{{{labels}}} {_go(child._value.get())}\n")
        yield "".join(lines)
        lines = []
    if lines:
        yield "".join(lines)


def _histogram_lines(
    name: str,
    pairs: list[tuple[str, str]],
    labels: str,
    child: Any,
    bounds: list[str],
    with_sum: bool,
) -> Iterator[str]:
    # `le` takes its sorted place among the labels, as the library sorts every line's
    at = sum(1 for k, _ in pairs if k < "le")
    before = ",".join(f'{k}="{v}"' for k, v in pairs[:at])
    after = ",".join(f'{k}="{v}"' for k, v in pairs[at:])
    head = f'{name}_bucket{{{before}{"," if before else ""}le="'
    tail = f'"{"," if after else ""}{after}}} '
    acc = 0.0
    for bucket, bound in zip(child._buckets, bounds, strict=True):
        acc += bucket.get()
        yield f"{head}{bound}{tail}{_go(acc)}\n"
    yield f"{name}_count{{{labels}}} {_go(acc)}\n"
    if with_sum:
        yield f"{name}_sum{{{labels}}} {_go(child._sum.get())}\n"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
