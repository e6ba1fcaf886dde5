"""Why a TLS handshake failed, in words a person can act on: the agent's CLI (`--url`),
the providers' client and the checks' probes (`checks.exchange.classify`) say it alike.
No I/O, no aiohttp import: the error is read by its attributes."""

from __future__ import annotations

import ssl

_WRONG_HOST = frozenset({62, 64})
"""OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: a CA bundle
($SSL_CERT_FILE) does not help there."""


def _ssl_error(exc: BaseException) -> BaseException:
    """The `ssl` error under an aiohttp `ClientSSLError` (its `certificate_error` for a
    certificate not verified, else its `os_error`), or `exc` itself."""
    return getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None) or exc


def _not_tls(error: BaseException) -> bool:
    """What a server answering in plain http (not TLS) makes of a handshake."""
    return isinstance(error, ssl.SSLError) and error.reason == "WRONG_VERSION_NUMBER"


def tls_lasting(exc: BaseException) -> bool:
    """A TLS failure no retry mends: a certificate not verified, or for another host, or a
    server that does not speak TLS there. Each asks for a change of configuration (a CA
    bundle, a host name, an `http://`); a handshake cut short may be an outage."""
    error = _ssl_error(exc)
    if isinstance(error, ssl.SSLCertVerificationError):
        return True
    return _not_tls(error)


def tls_reason(exc: BaseException) -> str:
    """`TLS failed: …` for an aiohttp `ClientSSLError` (or an `ssl.SSLError` itself). An
    SSL error's code is OpenSSL's, not an errno: said by `os_reason`, a plain-http server
    and a self-signed one both read "Operation not permitted", and as a failed connection
    neither said TLS at all."""
    error = _ssl_error(exc)
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_code in _WRONG_HOST:
        return (
            f"TLS failed: its certificate is for another host ({error.verify_message}):"
            " use a name the certificate is for"
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"TLS failed: its certificate was not verified ({error.verify_message});"
            " $SSL_CERT_FILE names the CA bundle to verify it with"
        )
    if _not_tls(error):
        return "TLS failed: it did not answer in TLS (does it serve http://, not https://?)"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed: {error.reason or error}"
    said = " ".join(str(exc).split())[:200]
    return f"TLS failed: {said or type(exc).__name__}"
