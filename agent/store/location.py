"""Where a `store.url` keeps its data, in words for logs and messages.

Pure: no I/O and no database driver, so the CLI can name the store before opening it
(and without asyncpg installed). Never shows a password.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

SQLITE_PREFIX = "sqlite:///"
SQLITE_DEFAULT = "postflight.db"


def sqlite_path(url: str) -> str:
    """The file a `sqlite:///path` URL names, as given (a relative path is opened
    relative to the working directory, as the example configuration implies)."""
    return url.removeprefix(SQLITE_PREFIX) or SQLITE_DEFAULT


def describe_url(url: str) -> str:
    """`host:port/database` of a PostgreSQL URL, for messages: never the user's password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable PostgreSQL URL)"
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts:
        query = parse_qs(parts.query)
        hosts = (query.get("host") or ["localhost"])[0]
        ports = query.get("port")
        if ports:
            hosts += f":{ports[0]}"
    database = unquote(parts.path.lstrip("/")) or "(default database)"
    return f"{hosts}/{database}"


def store_location(url: str) -> str:
    """The store a `store.url` names, as the start log shows it: a SQLite file's absolute
    path (a relative `sqlite:///./postflight.db` run from another directory is another
    store, which this makes visible), a PostgreSQL server's `host:port/database`."""
    if url.startswith(SQLITE_PREFIX):
        path = sqlite_path(url)
        if path == ":memory:":
            return "SQLite in memory (nothing kept after a stop)"
        return f"SQLite file {os.path.abspath(path)}"
    if url.startswith(("postgresql://", "postgres://")):
        return f"PostgreSQL {describe_url(url)}"
    return "(unsupported store url)"
