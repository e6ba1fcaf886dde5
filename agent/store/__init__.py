"""Where the agent keeps what it must not lose (see `agent.store.base`)."""

from __future__ import annotations

from agent.store.base import Conflict, Store, StoreError

__all__ = ["Conflict", "Store", "StoreError", "store_from_url"]


def store_from_url(url: str) -> Store:
    """The store a `store.url` names: `sqlite:///path` or `postgresql://…`."""
    if url.startswith("sqlite:///"):
        from agent.store.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from agent.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(
                "the PostgreSQL store needs asyncpg: pip install 'postflight-agent[postgres]'"
            ) from exc
        store: Store = PostgresStore(url)
        return store
    raise StoreError(f"unsupported store url {url!r}: use sqlite:/// or postgresql://")
