"""What every configuration model shares: the strict base (unknown keys are errors,
values frozen), the URL shape and the non-empty-secret check. Pure models; imports
nothing of agent, so settings, providers and integrations can all build on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr
from yarl import URL


def _parsed_url(value: str) -> str:
    """A URL the clients can use: a host, and a port in 1-65535. The pattern alone let
    `http://host:99999` and `http://[::1` through, to fail at run time as tracebacks. The
    value is not quoted back: a webhook's URL may carry a token."""
    try:
        url = URL(value)
        port = url.port  # yarl checks the port when it is read
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if not url.host:
        raise ValueError("not a valid URL: it has no host")
    if any(char.isspace() for char in url.host):  # a name no resolver finds
        raise ValueError("not a valid URL: its host has a space")
    if port == 0:
        raise ValueError("not a valid URL: port 0")
    return value


HttpUrl = Annotated[
    str, Field(pattern=r"^https?://[^\s/]+", max_length=2048), AfterValidator(_parsed_url)
]


TOKEN_BESIDE_CREDENTIALS = (
    "a user:password in this URL cannot be sent beside the token"
    " (both are the Authorization header): remove it"
)


def has_credentials(url: str) -> bool:
    """Whether `url` carries a `user:password@` (or a user alone)."""
    parsed = URL(url)
    return parsed.raw_user is not None or parsed.raw_password is not None


def without_credentials_beside_a_token(value: str) -> str:
    """A URL a client sends a bearer token to: aiohttp refuses a request with both an
    Authorization header and credentials in its URL (a ValueError at every request, the
    provider "unreachable" each round, while validate-config had said "valid")."""
    if has_credentials(value):
        raise ValueError(TOKEN_BESIDE_CREDENTIALS)
    return value


def a_base(advice: str) -> Callable[[str | None], str | None]:
    """A validator for a URL the agent adds paths to (`{url}/api/v1/query_range`, a
    page's `{public_url}/deploys/…`): a query string or a fragment there went before
    every path (`?token=abc/api/v1/…`), so no call could work while validate-config said
    "valid", and a token in it showed in every link built from it. `advice` says where
    what was put there belongs. The value is not quoted back: it may carry a token."""

    def check(value: str | None) -> str | None:
        if value is not None and ("?" in value or "#" in value):
            raise ValueError(
                "a query string (?…) or fragment (#…) cannot be in this URL: the agent adds"
                f" paths after it, so every call and link would miss; {advice}"
            )
        return value

    return check


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def non_empty_secret(value: SecretStr) -> SecretStr:
    """A blank secret is a configuration error, not an anonymous request."""
    if not value.get_secret_value().strip():
        raise ValueError("must not be empty")
    return value


def optional_non_empty_secret(value: SecretStr | None) -> SecretStr | None:
    return None if value is None else non_empty_secret(value)


def query_read_by_none(key: str, source: str) -> str:
    """A rule's `query`/`nrql` where its source reads none: the file validated, and the
    user's PromQL judged nothing while the rule judged its `metric`."""
    return (
        f"{key} is read only by a provider's rule that takes one (prometheus: query,"
        f" newrelic: nrql): a {source} rule judges its metric; remove it"
    )


def header_token(value: SecretStr) -> SecretStr:
    """A token sent in an HTTP header: not empty, and one a header can carry as written. A
    secret file's last newline, read into `${API_TOKEN}`, made an agent that refused every
    request (401); a provider's, a call that could not be sent. Never quoted."""
    text = non_empty_secret(value).get_secret_value()
    if "\n" in text or "\r" in text:
        problem = "has a line break"
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        problem = "has a control character"
    elif text != text.strip():
        problem = "starts or ends with a space"
    else:
        return value
    raise ValueError(
        f"{problem}: no HTTP header can carry it as written (a secret read from a file with"
        " its last newline?); remove it"
    )


def optional_header_token(value: SecretStr | None) -> SecretStr | None:
    return None if value is None else header_token(value)


class FieldError(ValueError):
    """A value error about one key of the model being checked (`field`), so the settings
    report it at that key's path (`…rules[0].query`) rather than at the model's."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
