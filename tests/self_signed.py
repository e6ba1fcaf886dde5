"""A self-signed certificate for 127.0.0.1, made by the `openssl` command: the https
targets of the tests (a check's TLS, the agent's loop stalled in a TLS connect)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(directory: Path, days: int = 5) -> tuple[Path, Path]:
    """(cert, key) in `directory`: a certificate for 127.0.0.1 that expires in `days`."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
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
