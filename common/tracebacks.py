"""Exceptions freed with their handler, not by the collector.

aiohttp and aiohappyeyeballs keep the exception they raise in a local of a frame that its
own traceback holds (`last_exc`, `first_exception`; a failed read's `connection_lost`): a
reference cycle per failed request, 70-150 objects, that only the cyclic collector frees.
The daemon collects rarely (`agent.windows.heap`), so a target or a provider that keeps
failing piled them up by the hundred thousand between young collections (+80 MB, a pause
of seconds when the collection came). Where a failure is kept only as a kind and a
message, its tracebacks are dropped at once.
"""

from __future__ import annotations


def without_tracebacks(exc: BaseException) -> BaseException:
    """`exc` and every exception chained to it, stripped of their tracebacks (which hold
    the frames that hold them): nothing reads those frames where this is called."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += (current.__cause__, current.__context__)
    return exc
