"""A self-signed certificate for 127.0.0.1, made by the `openssl` command: the https
targets of the tests (a check's TLS, the agent's loop stalled in a TLS connect), and a
certificate whose expiry the checks read from its DER."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
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
