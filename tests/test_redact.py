"""Secrets never leave the agent: the redactor behind logs, alerts and API errors."""

from __future__ import annotations

import pytest

from common.redaction import MASK, Redactor, address_redactor, url_secrets, without_credentials


@pytest.mark.parametrize(
    ("text", "secret_part"),
    [
        ("calling json://user:p4ss@chat.local/alerts", "p4ss"),
        ("header Authorization: Bearer eyJhbGciOi.abc", "eyJhbGciOi.abc"),
        ("GET /x?api_key=abcd1234&x=1", "abcd1234"),
        ("token=zzzz9999 rejected", "zzzz9999"),
        ("the configured value is hunter2hunter2", "hunter2hunter2"),
    ],
)
def test_secrets_are_masked(text: str, secret_part: str) -> None:
    redacted = Redactor(["hunter2hunter2"])(text)
    assert secret_part not in redacted
    assert MASK in redacted


def test_plain_text_is_left_alone() -> None:
    text = "Sentry token rejected (401); error_rate 0.31 > max 0.05 for 3 rounds"
    assert Redactor(["unrelated-secret"])(text) == text


def test_longer_secrets_are_masked_before_their_prefixes() -> None:
    redact = Redactor(["abcd", "abcdefgh"])
    assert redact("x abcdefgh y") == f"x {MASK} y"


def test_one_redactor_serves_checks_and_the_agent() -> None:
    """The same rules in a check's message as in a log line: URL credentials, bearer
    tokens and assignments go; prose that merely mentions a token stays."""
    redact = Redactor(["s3cr3t-value"])
    text = "POST https://bob:pw@api.local/x Authorization: Bearer abcdef123; key s3cr3t-value"
    assert redact.text(text) == redact(text)
    assert "pw@" not in redact(text) and "abcdef123" not in redact(text)
    assert "s3cr3t-value" not in redact(text)
    assert redact("capture token: expected $.access_token") == (
        "capture token: expected $.access_token"
    )
    assert redact("password: hunter2") == f"password: {MASK}"


@pytest.mark.parametrize(
    ("url", "link"),
    [
        (
            "http://pf:pw@prom.local:9090/graph?g0.expr=up",
            "http://prom.local:9090/graph?g0.expr=up",
        ),
        ("https://token@[::1]:9090/graph", "https://[::1]:9090/graph"),
        ("https://a:b@c@sentry.local/x", "https://sentry.local/x"),
        ("https://sentry.io/organizations/acme/", "https://sentry.io/organizations/acme/"),
    ],
)
def test_a_link_for_people_drops_the_urls_credentials(url: str, link: str) -> None:
    assert without_credentials(url) == link


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        # A configured secret in a query, then the assignment rule: the colon after
        # the masked value went with it ("token=*** status 500").
        ("GET /broken?token=tk-0123456789: status 500", "GET /broken?token=***: status 500"),
        ("token=zzzz9999: rejected", "token=***: rejected"),
        ("(api_key=abcd1234)", "(api_key=***)"),
        ("sent password=hunter2.", "sent password=***."),
        (
            "header Authorization: Bearer eyJhbGciOi.abc: refused",
            "header Authorization: Bearer ***: refused",
        ),
        ("secret=a:b:c rest", "secret=*** rest"),
    ],
)
def test_a_masked_value_keeps_everything_around_it(text: str, redacted: str) -> None:
    """Only the secret goes: the separator after it, a closing bracket, the sentence's
    full stop and the `Bearer` before it stay, so the message still reads."""
    assert Redactor(["tk-0123456789"])(text) == redacted


def test_a_webhook_address_s_tokens_are_hidden_and_its_route_and_host_stay() -> None:
    """A receiver's refusal quoting the hook's own URL (Express's `Cannot POST …`)."""
    url = "https://hooks.example.com:8443/hooks/catch/1234567/a8Kq2Zr7/rollback?sig=Zx9Vb8Nm7Lk6"
    hide = address_redactor(url)
    path = "/hooks/catch/1234567/a8Kq2Zr7/rollback?sig=Zx9Vb8Nm7Lk6"
    said = hide(f"Cannot POST {path} (hooks.example.com:8443)")
    assert said == "Cannot POST /hooks/catch/***/***/rollback?sig=*** (hooks.example.com:8443)"
    # a piece inside a longer word is not one of the address's: left alone
    assert hide("a8Kq2Zr7x rollback refused") == "a8Kq2Zr7x rollback refused"
    assert (
        address_redactor("http://127.0.0.1:9998/rollback")("rollback refused") == "rollback refused"
    )


@pytest.mark.parametrize(
    ("url", "whole", "secrets"),
    [
        ("http://hook:correct%20horse@h.example/x", False, {"correct%20horse", "correct horse"}),
        ("https://ghp_a1B2c3D4e5F6g7H8@github.example/x", False, {"ghp_a1B2c3D4e5F6g7H8"}),
        ("https://admin@h.example/x", False, set()),  # a user, not a token
        ("/health?token=tk%2B1&page=2&sig=s1g+x", False, {"tk%2B1", "tk+1", "s1g+x", "s1g x"}),
        ("https://h.example/x?code=abcd&api_key=k3yk3y", False, {"abcd", "k3yk3y"}),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", True,
         {"4174216298", "JHMHI8qBe7bk2ZwO5U711o3dV_js"}),
        ("tgram://123456789:AAHx9yzAbCdEf/", True, {"123456789", "AAHx9yzAbCdEf"}),
        ("mailto://alerts:pw0rd@smtp.mail-2024.example.com:587?to=ops@example.com", True,
         {"pw0rd"}),
        ("json://127.0.0.1:8000/hooks", True, set()),
        ("http://[::1", False, set()),  # not a URL to take apart
    ],
)  # fmt: skip
def test_the_secret_parts_of_a_url_are_its_password_token_like_user_and_query_tokens(
    url: str, whole: bool, secrets: set[str]
) -> None:
    """What a receiver may quote back on its own: the password it was sent, the token in
    its query; an apprise URL's token-like host and path pieces. A host name, a port, a
    route's words and a query's other values are not secrets."""
    assert url_secrets(url, whole=whole) == secrets


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        # inside words and identifiers: left alone (the mask's place spelled the secret);
        # a secret that is a word is masked where that word stands: it is betrayed by its
        # words around either way, which is why a short API token is warned about
        ("an API token shorter than 16 is guessable", "an API *** shorter than 16 is guessable"),
        ("warning: server.api_tokens[0] (line 3)", "warning: server.api_tokens[0] (line 3)"),
        ("/tmp/test_api_token_is_0/x.yaml", "/tmp/test_api_token_is_0/x.yaml"),
        ("misguessed", "misguessed"),
        # standing whole: masked, in every form a log, a header or a receiver quotes it
        ("guess", "***"),
        ("Authorization: Bearer guess", "Authorization: Bearer ***"),
        ("GET https://h.example/x?key=guess&page=2", "GET https://h.example/x?key=***&page=2"),
        ("https://bot:guess@h.example/", "https://***@h.example/"),
        ('{"error": "bad credential guess", "sent": "guess"}',
         '{"error": "bad credential ***", "sent": "***"}'),
        ("Cannot POST /hooks/guess/rollback", "Cannot POST /hooks/***/rollback"),
        ("X-Token: guess, token rejected", "X-Token: ***, *** rejected"),
        ("(guess).", "(***)."),
        # after an escape it is glued to but not part of: percent-encoded, JSON-escaped
        ("next=%2F%3Fk%3Dguess%26p%3D2", "next=%2F%3Fk%3D***%26p%3D2"),
        ('"line\\nguess"', '"line\\n***"'),
        ('"\\u0022guess\\u0022"', '"\\u0022***\\u0022"'),
    ],
)  # fmt: skip
def test_a_short_secret_is_masked_where_it_stands_whole_not_inside_words(
    text: str, redacted: str
) -> None:
    """`api_tokens: [guess, token]` made the daemon log 'shorter than 16 is ***able' and
    'server.api_***s[0]': a secret under 16 characters is masked as a token of its own."""
    assert Redactor(["guess", "token"])(text) == redacted


def test_a_long_secret_is_masked_even_glued_to_other_text() -> None:
    """16 characters and more: no word holds it by chance, and a copy glued to a prefix
    or a suffix (an id, a concatenated header) must not show."""
    secret = "a8Kq2Zr7Xw4Lm9Tb"
    redact = Redactor([secret])
    assert redact(f"id-{secret}x and pre{secret}") == "id-***x and pre***"
    assert redact(f"Bearer {secret}") == "Bearer ***"


def test_a_secret_edged_with_symbols_is_masked_whatever_touches_its_symbol_ends() -> None:
    """The whole-token rule holds on an end that is a word character only: a secret
    ending in a symbol has no word to be part of on that side."""
    redact = Redactor(["pw1!", "-x9z"])
    assert redact("a pw1!b and q-x9z") == "a ***b and q***"
    assert redact("apw1! x") == "apw1! x"  # a word character before its word start


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("401: Bearer token required", "401: Bearer token required"),
        ("HTTP basic authentication failed", "HTTP basic authentication failed"),
        ("sent Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "sent Bearer ***"),
        ("sent Bearer abcd1234", "sent Bearer ***"),
        ("sent Basic dXNlcjpwYXNz", "sent Basic ***"),
        ("sent Bearer abcdefghijklmnopq", "sent Bearer ***"),  # long: a token
        ("Authorization: Bearer lowercase", "Authorization: Bearer ***"),  # a header: always
    ],
)
def test_bearer_and_basic_mask_a_credential_not_the_word_after_them(
    text: str, redacted: str
) -> None:
    """A receiver's 'Bearer token required' read 'Bearer *** required'."""
    assert Redactor()(text) == redacted
