"""`postflight run` as a pipeline's script finds it, fed random JSON bodies on each route
that reads one (register, a registration under a used Idempotency-Key, a manual
rollback, cancel): never a 5xx, every 4xx a problem+json whose `detail` says something,
and the daemon still ready after, its `postflight_api_requests_total{result="5xx"}`
unset. Hypothesis, run derandomised with the suite's `ci` profile."""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.api.test_garbage import FUZZ, deploy_like, json_values
from tests.e2e.conftest import TOKEN, environment
from tests.e2e.crash import free_port
from tests.e2e.test_replicas import Daemon, running

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("daemon-fuzz")]
"""One worker runs both tests (`--dist loadgroup`), so the module's daemon starts once: spread
over two workers, as any two tests of the suite are, each started its own."""

EXAMPLES = 60
"""Each a few requests to a daemon: enough to meet each kind of body, in seconds."""

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBLEM_STATUSES = (400, 404, 409, 413, 415, 422)


def call(daemon: Daemon, method: str, path: str, body: Any = None, **headers: str) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        daemon.url + path,
        data=data,
        method=method,
        headers={**AUTH, "Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers.get_content_type(), refused.read()


def said(daemon: Daemon, method: str, path: str, body: Any, **headers: str) -> int:
    """The status; a refusal must be a problem+json that says what is wrong."""
    status, content_type, raw = call(daemon, method, path, body, **headers)
    assert status < 500, (status, method, path, body, raw[:300])
    if status >= 400:
        assert status in PROBLEM_STATUSES, (status, body, raw[:300])
        assert content_type == "application/problem+json", (content_type, raw[:300])
        problem = json.loads(raw)
        assert problem["status"] == status and len(problem["detail"]) > 10, problem
    return int(status)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("fuzz")
    target = f"http://127.0.0.1:{free_port()}"  # nothing listens: never probed healthy
    dry = (
        "rollback: {url: 'http://127.0.0.1:9/rollback', secret: fuzz-secret-0123456789,"
        " dry_run: true}"
    )
    config = (
        f"server:\n  listen: 127.0.0.1:{{port}}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: sqlite:///{tmp / 'postflight.db'}\n"
        "environments:\n"
        + textwrap.indent(
            environment(
                "production",
                target,
                window="1h",
                interval="10s",
                background_interval="1h",
                extra=dry,
            )
            + environment("staging", target, window="1h", interval="10s", background_interval="1h"),
            "  ",
        )
    )
    with running(tmp, "fuzz", config) as started:
        yield started
        assert call(started, "GET", "/readyz")[0] == 200
        with urllib.request.urlopen(started.url + "/metrics", timeout=30) as r:
            text = r.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "postflight_api_requests_total":
                    assert sample.labels.get("result") != "5xx" or sample.value == 0, sample


def test_random_registrations_are_never_a_5xx(daemon: Daemon) -> None:
    @settings(FUZZ, max_examples=EXAMPLES)
    @given(body=st.one_of(deploy_like, json_values), key=st.none() | st.just("fuzz-used"))
    def check(body: Any, key: str | None) -> None:
        said(daemon, "POST", "/v1/deploys", body, **({"Idempotency-Key": key} if key else {}))

    check()


def test_random_rollback_and_cancel_bodies_are_never_a_5xx(daemon: Daemon) -> None:
    status, _, raw = call(
        daemon, "POST", "/v1/deploys", {"environment": "production", "version": "r"}
    )
    assert status == 201, raw
    deploy = json.loads(raw)["id"]
    reasons = st.one_of(
        json_values,
        st.fixed_dictionaries({"reason": json_values}),
        st.fixed_dictionaries({"reason": st.text(max_size=1100)}),
        st.dictionaries(st.sampled_from(["reason", "force", ""]), json_values, max_size=3),
    )

    @settings(FUZZ, max_examples=EXAMPLES)
    @given(body=reasons, target=st.sampled_from([deploy, "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ", "x"]))
    def check(body: Any, target: str) -> None:
        said(daemon, "POST", f"/v1/deploys/{target}/rollback", body)
        said(daemon, "POST", f"/v1/deploys/{target}/cancel", body)

    check()
