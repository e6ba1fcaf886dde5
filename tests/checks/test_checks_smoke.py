"""The `smoke` check: steps in order, captures and cookies carried, stop at the first failure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError
from pytest_aiohttp import AiohttpServer
from yarl import URL

from checks.base import CheckResult
from checks.registry import run_check
from checks.smoke import SmokeCheck, SmokeCheckConfig
from tests.checks.check_target import SECRET, MakeContext, free_port

LOGIN = {
    "name": "login",
    "method": "POST",
    "path": "/api/login",
    "json": {"user": "smoke", "password": "pw-smoke"},
    "expect": {"status": 200},
    "capture": {"token": "$.token", "user_id": "$.user.id"},
}
PROFILE = {
    "name": "profile",
    "method": "GET",
    "path": "/api/me",
    "headers": {"Authorization": "Bearer {token}"},
    "expect": {"status": 200, "json": {"name": "smoke"}},
}


def smoke(*steps: dict[str, Any], **fields: Any) -> SmokeCheck:
    config = SmokeCheckConfig.model_validate(
        {"name": "login-flow", "type": "smoke", "steps": list(steps), **fields}
    )
    return SmokeCheck(config)


async def run(check: SmokeCheck, make_ctx: MakeContext, base: URL | str) -> CheckResult:
    return await run_check(check, make_ctx(base, secrets=("pw-smoke",)))


async def test_login_flow_passes_with_one_sample_per_step(
    make_ctx: MakeContext, target: URL
) -> None:
    result = await run(smoke(LOGIN, PROFILE), make_ctx, target)
    assert result.ok, result.message
    assert [s.status for s in result.samples] == [200, 200]
    assert all(s.ok and s.check == "login-flow" and s.latency_s for s in result.samples)
    assert [s["name"] for s in result.details["steps"]] == ["login", "profile"]
    assert result.message.startswith("2 steps passed in ")


async def test_cookies_are_kept_across_steps_but_not_across_runs(
    make_ctx: MakeContext, target: URL
) -> None:
    """`/api/me` wants the `sid` cookie set by the login step."""
    check = smoke(LOGIN, PROFILE)
    assert (await run(check, make_ctx, target)).ok
    alone = await run(
        smoke(PROFILE | {"headers": {"Authorization": f"Bearer {SECRET}"}}), make_ctx, target
    )
    assert not alone.ok
    assert "status: expected 200, got 403" in alone.message
    assert (await run(check, make_ctx, target)).ok


async def test_failure_names_the_step_with_expected_got_and_redacted_body(
    make_ctx: MakeContext, target: URL
) -> None:
    bad_token = PROFILE | {"headers": {"Authorization": "Bearer {user_id}"}}
    result = await run(smoke(LOGIN, bad_token), make_ctx, target)
    assert not result.ok and result.result == "fail"
    assert result.message == (
        "step 'profile' (2/2) GET /api/me: status: expected 200, got 401; "
        'body: {"error":"bad token","token":"***"}'
    )
    assert result.details["step"] == "profile" and result.details["step_index"] == 1
    assert result.details["expected"] == "200" and result.details["got"] == "401"
    assert result.details["status"] == 401
    assert [s.ok for s in result.samples] == [True, False]
    assert result.samples[1].error == "status"
    assert SECRET not in repr(result.details)


async def test_stops_at_the_first_failing_step(make_ctx: MakeContext, target: URL) -> None:
    wrong_password = LOGIN | {"json": {"user": "smoke", "password": "nope-nope"}}
    result = await run(smoke(wrong_password, PROFILE), make_ctx, target)
    assert not result.ok
    assert len(result.samples) == 1
    assert result.details["step"] == "login"
    assert result.message.startswith("step 'login' (1/2) POST /api/login: status: expected 200")
    # The password sent is echoed back by the target, and hidden from the report.
    assert "nope-nope" not in result.message and "***" in result.message


async def test_configured_secrets_are_hidden(make_ctx: MakeContext, target: URL) -> None:
    """`pw-smoke` is in ctx.secrets; the target echoes the password it got."""
    echoed = LOGIN | {"json": {"user": "nobody", "pass": "pw-smoke"}}
    result = await run(smoke(echoed), make_ctx, target)
    assert not result.ok
    assert "pw-smoke" not in result.message and "pw-smoke" not in repr(result.details)


async def test_captured_values_fill_path_and_typed_json(make_ctx: MakeContext, target: URL) -> None:
    use_id = {
        "name": "item",
        "method": "PUT",
        "path": "/api/items/{user_id}",
        "json": {"owner": "{user_id}", "note": "user {user_id}", "literal": "{{user_id}}"},
        "expect": {
            "json": {"item": "7", "body": '{"owner":7,"note":"user 7","literal":"{user_id}"}'}
        },
    }
    result = await run(smoke(LOGIN, use_id), make_ctx, target)
    assert result.ok, result.message


async def test_missing_capture_fails_the_step(make_ctx: MakeContext, target: URL) -> None:
    step = LOGIN | {"capture": {"token": "$.access_token"}}
    result = await run(smoke(step, PROFILE), make_ctx, target)
    assert not result.ok
    assert "capture token: expected $.access_token, got no such field" in result.message
    assert result.samples[0].error == "assertion" and result.samples[0].status == 200
    assert '"token":"***"' in result.details["body"]


async def test_per_step_timeout(make_ctx: MakeContext, target: URL) -> None:
    fast = {"name": "fast", "path": "/ok"}
    slow = {"name": "slow", "path": "/slow?ms=3000", "timeout": "150ms"}
    result = await run(smoke(fast, slow, timeout="10s"), make_ctx, target)
    assert not result.ok
    assert result.message == "step 'slow' (2/2) GET /slow?ms=3000: no response within 150ms"
    assert [s.error for s in result.samples] == [None, "timeout"]
    assert "body" not in result.details


async def test_a_step_made_past_the_rounds_end_gets_its_share_of_the_room(
    make_ctx: MakeContext, target: URL
) -> None:
    """Each step gets at least its share of the room (its timeout's part of the steps')
    from when it is made: before, a step made as the round ended waited what was left of
    it (at most 100 ms here, for a 150 ms answer) and its timeout was the target's."""
    first = {"name": "first", "path": "/slow?ms=400"}
    second = {"name": "second", "path": "/slow?ms=150"}
    ctx = make_ctx(target, deadline=asyncio.get_running_loop().time() + 0.5, room=0.5)
    result = await run_check(smoke(first, second, timeout="1s"), ctx)
    assert result.ok, result.message  # the second step waited up to 0.25 s


async def test_unreachable_target(make_ctx: MakeContext) -> None:
    result = await run(smoke(LOGIN, PROFILE), make_ctx, f"http://127.0.0.1:{free_port()}")
    assert not result.ok and not result.details.get("crashed")
    assert result.samples[0].error == "connect"
    assert result.details["step"] == "login"


async def test_long_bodies_are_truncated(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    async def huge(_: web.Request) -> web.Response:
        return web.Response(text="e" * 10_000, status=500)

    app = web.Application()
    app.router.add_get("/", huge)
    server = await aiohttp_server(app)
    result = await run(smoke({"name": "home", "path": "/"}), make_ctx, server.make_url(""))
    assert len(result.details["body"]) == 200 and result.details["body"].endswith("…")
    assert len(result.message) < 400


async def test_budget_is_the_sum_of_step_timeouts() -> None:
    check = smoke({"name": "a", "timeout": "1s"}, {"name": "b"}, timeout="3s")
    assert check.budget_s() == 4.0


async def test_steps_share_the_pool_but_not_the_session(make_ctx: MakeContext, target: URL) -> None:
    ctx = make_ctx(target)
    results = await asyncio.gather(*(run_check(smoke(LOGIN, PROFILE), ctx) for _ in range(5)))
    assert all(r.ok for r in results)
    assert not ctx.session.closed


@pytest.mark.parametrize(
    ("steps", "fragment"),
    [
        ([], "at least 1 item"),
        ([PROFILE], "step 'profile' uses {token}, which no earlier step captures"),
        ([LOGIN, LOGIN], "two steps are named 'login'"),
        ([LOGIN | {"capture": {"bad-name": "$.x"}}], "not a variable name"),
        ([LOGIN | {"capture": {"x": "$..[["}}], "not a valid JSONPath"),
        ([LOGIN | {"expect": {"status": "9xx"}}], "not a status"),
        (
            [{"name": "x", "path": "/{later}"}, {"name": "y", "capture": {"later": "$.a"}}],
            "uses {later}",
        ),
        ([{"path": "/"}], "name"),
    ],
)
def test_bad_steps_are_refused(steps: list[dict[str, Any]], fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        SmokeCheckConfig.model_validate({"name": "s", "type": "smoke", "steps": steps})
    assert fragment in str(err.value)


def test_example_config_validates() -> None:
    config = SmokeCheckConfig.model_validate(
        {
            "name": "login-flow",
            "type": "smoke",
            "steps": [
                {
                    "name": "login",
                    "method": "POST",
                    "path": "/api/login",
                    "json": {"user": "smoke", "password": "smoke"},
                    "expect": {"status": 200},
                    "capture": {"token": "$.token"},
                },
                {
                    "name": "profile",
                    "method": "GET",
                    "path": "/api/me",
                    "headers": {"Authorization": "Bearer {token}"},
                    "expect": {"status": 200},
                },
            ],
        }
    )
    assert [s.name for s in config.steps] == ["login", "profile"]
    assert config.steps[1].placeholders() == {"token"}


async def test_one_step_is_said_in_the_singular(make_ctx: MakeContext, target: URL) -> None:
    """A smoke check of one step read `1 steps passed`."""
    result = await run(smoke(LOGIN), make_ctx, target)
    assert result.ok, result.message
    assert result.message.startswith("1 step passed in "), result.message
