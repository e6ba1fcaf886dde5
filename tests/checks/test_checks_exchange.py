"""Pieces under every HTTP check: certificate expiry parsing and secret redaction."""

from __future__ import annotations

import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from checks.exchange import cert_not_after
from common.redaction import Redactor, sensitive_values, snippet
from tests.self_signed import self_signed


def der_and_enddate(tmp_path: Path, days: int) -> tuple[bytes, datetime]:
    cert, _ = self_signed(tmp_path, days, newkey=("ec", "-pkeyopt", "ec_paramgen_curve:P-256"))
    end = (
        subprocess.run(
            ["openssl", "x509", "-enddate", "-noout", "-in", str(cert)],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .removeprefix("notAfter=")
    )
    expected = datetime.strptime(end, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    return ssl.PEM_cert_to_DER_cert(cert.read_text()), expected


@pytest.mark.parametrize("days", [1, 400, 12000])  # 12000 days: past 2049, GeneralizedTime
def test_certificate_expiry_is_read_from_der(tmp_path: Path, days: int) -> None:
    der, expected = der_and_enddate(tmp_path, days)
    assert cert_not_after(der) == expected


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01", b"not a certificate at all"])
def test_garbage_certificate_is_unknown_expiry(der: bytes) -> None:
    assert cert_not_after(der) is None


def test_redactor_hides_secrets_and_url_passwords() -> None:
    r = Redactor(["tok", "tok-longer", ""])
    assert r.text("a tok-longer and tok") == "a *** and ***"
    assert r.text("see https://bob:pw@host/x") == "see https://***@host/x"
    assert r.value({"Password": "x", "n": ["tok"], "author": "ann"}) == {
        "Password": "***",
        "n": ["***"],
        "author": "ann",
    }


def test_snippet_blanks_sensitive_json_fields_and_truncates() -> None:
    body = b'{"access_token": "abc", "user": {"api_key": 5}, "msg": "' + b"x" * 500 + b'"}'
    text = snippet(body, Redactor(), 60)
    assert text.startswith('{"access_token":"***","user":{"api_key":"***"},"msg":"xx')
    assert len(text) == 60 and text.endswith("…")
    assert snippet(b"\xff\xfe plain", Redactor(["plain"])) == "�� ***"


def test_sensitive_values_of_a_login_body() -> None:
    body = {"user": "u", "password": "p4ss", "nested": [{"apiKey": 1234}], "flag": True}
    assert sensitive_values(body) == ["p4ss", "1234"]
