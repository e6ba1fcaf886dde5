"""The paging cursor `GET /v1/deploys` hands out: opaque to clients, (created_at, id) to us.

What it must not do: trust its input. A cursor comes back from a client, so anything
that is not one we encoded is a ValueError, never a query.
"""

from __future__ import annotations

import base64
import json


def encode_cursor(created_at: float, window_id: str) -> str:
    raw = json.dumps([created_at, window_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raise ValueError on anything that is not a cursor we handed out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, window_id = json.loads(raw)
        return float(created_at), str(window_id)
    except Exception as exc:
        raise ValueError("cursor is not valid; use the `next` value of a previous page") from exc
