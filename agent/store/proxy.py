"""A `Store` wrapped by another object that adds to some of its calls (publishing a
write, timing a call): one place for what every such wrapper repeats, the wrapped store
at hand and every method it does not define passed through unchanged."""

from __future__ import annotations

from typing import Any, cast

from agent.store.base import Store


class StoreProxy:
    """`store`'s every attribute, but those a subclass defines (or makes in `__getattr__`,
    calling this one for the store's own)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def wrapped(self) -> Store:
        return self._store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def as_store(self) -> Store:
        """This proxy, typed as the `Store` it stands in for."""
        return cast(Store, self)
