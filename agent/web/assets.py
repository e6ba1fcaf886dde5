"""The deploy page's own files (`static/`), each linked under a URL naming its content
(`page.<digest>.js`), computed once per process: after an upgrade a browser fetches
the new script with the new page, where under one URL cached for an hour it could run
the old script against the new page and API. Those URLs never change what they
answer, so they are cached as immutable; the plain ones (`page.js`, as bookmarked or
typed) are revalidated on each use, and an old digest is a 404, never the new content
under the old URL."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

CONTENT_TYPES = {
    "page.css": "text/css",
    "page.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
DIGEST_CHARS = 12
"""Hex digits of the SHA-256 in a URL: enough that two versions never share one."""
_VERSIONED = re.compile(
    rf"^(?P<stem>[a-z]+)\.(?P<digest>[0-9a-f]{{{DIGEST_CHARS}}})\.(?P<ext>[a-z]+)$"
)


@dataclass(frozen=True, slots=True)
class Asset:
    name: str
    body: bytes
    content_type: str
    digest: str

    @property
    def versioned_name(self) -> str:
        stem, ext = self.name.rsplit(".", 1)
        return f"{stem}.{self.digest}.{ext}"

    @property
    def etag(self) -> str:
        return self.digest


class Assets:
    """The files by name, and the name each is linked under."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self._by_name = {
            name: Asset(
                name,
                body,
                CONTENT_TYPES[name],
                hashlib.sha256(body).hexdigest()[:DIGEST_CHARS],
            )
            for name, body in files.items()
        }

    def url_name(self, name: str) -> str:
        """`name` as pages link it (`page.js` → `page.<digest>.js`)."""
        return self._by_name[name].versioned_name

    def find(self, requested: str) -> tuple[Asset, bool] | None:
        """The asset a URL's last segment names, and whether it named this content
        (its digest); None for an unknown name or another version's digest."""
        if requested in self._by_name:
            return self._by_name[requested], False
        m = _VERSIONED.match(requested)
        if m is None:
            return None
        asset = self._by_name.get(f"{m['stem']}.{m['ext']}")
        if asset is None or asset.digest != m["digest"]:
            return None
        return asset, True


@functools.cache
def packaged() -> Assets:
    """The files shipped in the wheel, read once."""
    static = resources.files("agent.web") / "static"
    return Assets({name: (static / name).read_bytes() for name in CONTENT_TYPES})
