"""A deploy id in lower case names the same deploy: a ULID is case-insensitive (its spec,
and Crockford's base32), and an id copied from a lower-cased log, chat or URL was a 404
"no deploy" for a deploy the agent was watching. Through the real CLI, in a process of
its own, and the HTTP API and deploy page of the real daemon."""

from __future__ import annotations

import re

import pytest

from agent.api.openapi import openapi_document
from agent.records import deploy_id_as_stored
from tests.cli_process import awaited_cli
from tests.e2e.conftest import TOKEN, AgentFactory, FlipTarget, environment
from tests.e2e.crash import free_port

pytestmark = pytest.mark.e2e


def lower_cased(deploy_id: str) -> str:
    lowered = deploy_id.lower()
    assert lowered != deploy_id  # a ULID has letters in its random part, as good as always
    return lowered


@pytest.mark.timeout(90)
async def test_a_deploy_id_in_lower_case_names_the_same_deploy(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    rollback = f"rollback: {{url: 'http://127.0.0.1:{free_port()}/rollback', secret: s3cret}}"
    agent = await start_agent(
        environment("production", flip_target.url, window="60s", extra=rollback)
    )
    first = await agent.register("production", "v1")
    low = lower_cased(first["id"])

    assert (await agent.get(low))["id"] == first["id"]
    connection = ["--url", agent.url, "--token", TOKEN]
    code, shown = await awaited_cli("status", low, *connection)
    assert code == 0 and first["id"] in shown, shown
    async with agent.http.get(f"{agent.url}/deploys/{low}", headers=agent.headers) as page:
        assert page.status == 200, await page.text()
        assert first["id"] in await page.text()
    events = f"{agent.url}/v1/deploys/{low}/events"
    async with agent.http.get(events, headers=agent.headers) as stream:
        assert stream.status == 200, await stream.text()
        assert first["id"] in (await stream.content.readuntil(b"\n\n")).decode()

    code, said = await awaited_cli("rollback", low, "--reason", "by hand", *connection)
    assert code == 0, said
    assert (await agent.get(first["id"]))["rollback"] is not None

    second = await agent.register("production", "v2")
    cancelled = await agent.cancel(lower_cased(second["id"]))
    assert (cancelled["id"], cancelled["state"]) == (second["id"], "cancelled")

    # an I (not in Crockford's base32) is no deploy id: the 404 says which letters are
    not_an_id = f"{agent.url}/v1/deploys/{low[:-1]}i"
    async with agent.http.get(not_an_id, headers=agent.headers) as missing:
        problem = await missing.json()
    assert missing.status == 404 and problem["type"].endswith("unknown-deploy"), problem
    assert (
        "26 characters of Crockford's base32 (digits, and letters other than I, L, O"
        in (problem["detail"])
    ), problem
    assert "and U, in either case)" in problem["detail"], problem


@pytest.mark.parametrize(
    "text",
    [
        "DEP_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",  # the prefix is ours, not the ULID's
        "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8Wſ",  # 'ſ'.upper() is 'S'
        "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ\n",
        "dep_01jd8x9q2zk3v7y0m5t4n6r8wi",  # no I in Crockford's alphabet, in either case
    ],
)
def test_only_the_ulids_case_is_read_loosely(text: str) -> None:
    assert deploy_id_as_stored(text) is None
    assert deploy_id_as_stored("dep_01jd8x9q2zk3v7y0m5t4n6r8wq") == "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"


def test_the_openapi_document_admits_a_lower_case_id_in_a_path() -> None:
    document = openapi_document()
    (param,) = document["paths"]["/v1/deploys/{id}"]["get"]["parameters"]
    pattern = re.compile(param["schema"]["pattern"])
    assert pattern.match("dep_01jd8x9q2zk3v7y0m5t4n6r8wq")
    assert not pattern.match("dep_01jd8x9q2zk3v7y0m5t4n6r8wi")
