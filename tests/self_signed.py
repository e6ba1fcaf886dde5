"""A self-signed certificate for 127.0.0.1, made by the `openssl` command: the https
targets of the tests (a check's TLS, the agent's loop stalled in a TLS connect), and a
certificate whose expiry the checks read from its DER; a server behind one that counts
the connections it accepts, to tell a fetch's attempts."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path


def self_signed(
    directory: Path, days: int = 5, newkey: Sequence[str] = ("rsa:2048",)
) -> tuple[Path, Path]:
    """(cert, key) in `directory`: a certificate for 127.0.0.1 that expires in `days`, its
    key made by `openssl req -newkey` with the arguments `newkey`."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            *newkey,
            "-nodes",
            "-days",
            str(days),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server's context presenting `cert` (a client that does not trust it fails its
    handshake)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class _Counted(asyncio.Protocol):
    """A connection as it is accepted, before its handshake: counted."""

    def __init__(self, accepted: list[int]) -> None:
        accepted.append(1)


@contextlib.asynccontextmanager
async def counting_tls_server(directory: Path) -> AsyncIterator[tuple[int, list[int]]]:
    """An https server on 127.0.0.1 behind a `self_signed` certificate made in `directory`:
    its port, and a list growing by one a connection it accepted (each handshake fails:
    nothing trusts the certificate)."""
    accepted: list[int] = []
    server = await asyncio.get_running_loop().create_server(
        lambda: _Counted(accepted), "127.0.0.1", 0, ssl=server_context(*self_signed(directory))
    )
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()
        await server.wait_closed()
