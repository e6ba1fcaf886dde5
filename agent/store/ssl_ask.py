"""asyncpg's SSL ask, its answer always retrieved.

asyncpg asks the server for SSL on each new TCP connection (`sslmode=prefer`, the
default) before it speaks PostgreSQL, and waits for the answer on a future of the ask's
protocol (`connect_utils.TLSUpgradeProto.on_data`). A connection cut in the loop iteration
or two between its socket connecting and that wait (a connect timeout, a task cancelled:
the store's look at the server, the pool closing, the cancel request of a query given up
as its session is cut) fails the future with "unexpected connection_lost() call" and
nobody awaits it: asyncio logged "Future exception was never retrieved" at ERROR once it
was collected, in the agent's log, where a user reads it as a fault. asyncpg retrieves
its own connection's future in that case (`__connect_addr`), not the ask's; here the ask's
is retrieved as it ends, so one awaited still raises and one dropped says nothing
(`tests/store/test_postgres_unretrieved.py`)."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncpg import connect_utils


def _retrieved(answer: asyncio.Future[Any]) -> None:
    if not answer.cancelled():
        answer.exception()


class _AnswerRetrieved:
    """asyncpg's SSL ask protocol, made with its answer retrieved as it ends."""

    def __init__(self, ask: Any) -> None:
        self.ask = ask

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        protocol = self.ask(*args, **kwargs)
        protocol.on_data.add_done_callback(_retrieved)
        return protocol


def retrieve_ssl_ask_answers() -> None:
    """Make every SSL ask's answer retrieved as it ends (once; a later asyncpg without
    the ask's protocol is left as it is)."""
    ask = getattr(connect_utils, "TLSUpgradeProto", None)
    if ask is not None and not isinstance(ask, _AnswerRetrieved):
        connect_utils.TLSUpgradeProto = _AnswerRetrieved(ask)
