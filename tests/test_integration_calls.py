"""`agent.integrations.clients.call`, the retried call behind GitHub statuses, gate
answers, Rolling Releases approvals and `rollback.then` follow-ups."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
import types

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.integrations import clients
from agent.integrations.clients import call


def waits_asked_for(monkeypatch: pytest.MonkeyPatch, jitter: float) -> list[float]:
    """The waits `clients.call` asks for from now on, recorded and not waited, with its
    random jitter draw fixed at `jitter`."""
    waits: list[float] = []

    async def sleep(delay: float) -> None:
        waits.append(delay)

    fake = {**{name: getattr(asyncio, name) for name in asyncio.__all__}, "sleep": sleep}
    monkeypatch.setattr(clients, "asyncio", types.SimpleNamespace(**fake))
    monkeypatch.setattr(clients, "random", types.SimpleNamespace(random=lambda: jitter))
    return waits


async def test_a_retry_after_http_date_is_waited_out_as_given_not_as_max_backoff() -> None:
    """`Retry-After: <HTTP-date>` was read against the epoch (now = 0), so a date 2 s
    ahead meant 56 years and the call waited `max_backoff` (30 s by default)."""
    seen: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            when = email.utils.formatdate(time.time() + 2, usegmt=True)
            return web.Response(status=503, headers={"Retry-After": when})
        return web.json_response({"id": 1}, status=201)

    app = web.Application()
    app.router.add_post("/statuses", handler)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        result = await call(
            session,
            "POST",
            str(server.make_url("/statuses")),
            headers={},
            body=b"{}",
            max_backoff=8.0,
        )
    assert result.ok and result.attempts == 2
    waited = seen[1] - seen[0]
    assert 0.5 < waited < 4.0, waited


async def test_a_github_rate_limit_403_is_retried_and_a_permission_403_is_not() -> None:
    """GitHub answers a rate limit with 403 as often as 429: a deployment status, a commit
    status or a gate answer (which production's deploy waits on) was given up at the
    first 403 while the token only had to wait. A 403 of a permission the token lacks
    still ends the call at once."""
    from agent.integrations.targets import github_rate_limit_wait
    from tests.fakes.github import DEPLOYMENT_ID, REPOSITORY, FakeGitHub

    async with FakeGitHub(token="gh") as github, aiohttp.ClientSession() as session:
        url = f"{github.url}/repos/{REPOSITORY}/deployments/{DEPLOYMENT_ID}/statuses"
        for kind, ok, attempts in (
            ("secondary_rate_limit", True, 2),
            ("rate_limit", True, 2),
            ("forbidden", False, 1),
        ):
            github.fail(kind, times=1, reset_in=0.2)
            result = await call(
                session,
                "POST",
                url,
                headers={"Authorization": "Bearer gh"},
                body=b'{"state": "success"}',
                backoff=0.01,
                rate_limit=github_rate_limit_wait,
            )
            assert (result.ok, result.attempts) == (ok, attempts), (kind, result)
            if not ok:
                assert result.status == 403 and "not accessible" in (result.error or "")


async def test_the_waits_go_on_from_the_attempts_earlier_senders_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A follow-up handed back by a stop keeps its attempt count (`made_before`); the next
    sender's waits began again at the first attempt's (its count said 3, its wait was
    attempt 1's). They grow from the count, as one sender's would have."""
    waits = waits_asked_for(monkeypatch, jitter=1.0)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/then", handler)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        for made_before, expected in ((0, [2.0, 4.0]), (2, [8.0, 16.0])):
            waits.clear()
            result = await call(
                session,
                "POST",
                str(server.make_url("/then")),
                headers={},
                attempts=3,
                backoff=1.0,
                max_backoff=100.0,
                made_before=made_before,
            )
            assert (result.ok, result.attempts, waits) == (False, 3, expected), made_before


@pytest.mark.parametrize("status", [600, 799, 999])
async def test_a_status_outside_http_s_range_is_retried_as_a_5xx(
    monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """RFC 9110 §15: a status outside 100-599 is invalid, to be processed as a 5xx (aiohttp
    reads any three digits). A GitHub status or a follow-up answered 600 failed at once,
    as a 4xx that will not change, where the rollback's own delivery retries it."""
    waits_asked_for(monkeypatch, jitter=0.0)
    posts, odd_ones = 0, 1

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal posts
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        posts += 1
        if posts <= odd_ones:
            odd = f"HTTP/1.1 {status} Odd\r\nConnection: close\r\nContent-Length: 4\r\n\r\n"
            writer.write(odd.encode() + b"busy")
        else:
            writer.write(
                b'HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 8\r\n\r\n{"id":1}'
            )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            result = await call(
                session, "POST", f"http://127.0.0.1:{port}/statuses", headers={}, body=b"{}"
            )
            assert (result.ok, result.attempts, result.data, posts) == (True, 2, {"id": 1}, 2)
            posts, odd_ones = 0, 9  # every answer the odd status: given up as a 5xx is
            result = await call(
                session, "POST", f"http://127.0.0.1:{port}/statuses", headers={}, attempts=2
            )
    finally:
        server.close()
    assert (result.ok, result.status, result.attempts, result.gave_up) == (
        False,
        status,
        2,
        True,
    )
    assert result.error == f"HTTP {status}: busy (not an HTTP status: retried as a 5xx)"


async def test_an_answer_whose_body_cannot_be_decoded_is_classed_by_its_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its status line and headers are the answer, whatever its body (as a rollback's, in
    `agent.rollback.delivery`): a 2xx whose body said gzip and was not (a proxy's
    mangling) was taken as no answer and sent again, a Rolling Releases stage approved
    twice (the second refused: the call failed), a 404 retried to its last attempt and
    a 503's Retry-After not honoured."""
    from tests.fakes.github import DEPLOYMENT_ID, REPOSITORY, FakeGitHub
    from tests.fakes.vercel import OLD, PROJECT, FakeVercel

    waits = waits_asked_for(monkeypatch, jitter=0.0)
    async with FakeVercel(token="v") as vercel, aiohttp.ClientSession() as session:
        vercel.start_rolling_release(PROJECT, OLD)
        vercel.fail("undecodable", times=1)
        result = await call(
            session,
            "POST",
            f"{vercel.url}/v1/projects/{PROJECT}/rolling-release/approve-stage",
            headers={"Authorization": "Bearer v"},
            body=b'{"nextStageIndex": 1, "canaryDeploymentId": "%s"}' % OLD.encode(),
        )
        assert (result.ok, result.status, result.attempts, result.data) == (True, 200, 1, None)
        assert (len(vercel.seen("approve-stage")), len(vercel.approvals)) == (1, 1)
    async with FakeGitHub(token="gh") as github, aiohttp.ClientSession() as session:
        url = f"{github.url}/repos/{REPOSITORY}/deployments/{DEPLOYMENT_ID}/statuses"
        github.fail("undecodable:404", times=1)
        result = await call(session, "POST", url, headers={}, body=b'{"state": "success"}')
        assert (result.ok, result.status, result.attempts, result.unanswered) == (
            False,
            404,
            1,
            0,
        )
        assert result.error == (
            "HTTP 404: (its body could not be read: Can not decode content-encoding: gzip)"
        )
        github.fail("undecodable:503", times=1, reset_in=7)
        result = await call(
            session,
            "POST",
            url,
            headers={"Authorization": "Bearer gh"},
            body=b'{"state": "success"}',
        )
        assert (result.ok, result.status, result.attempts, waits) == (True, 201, 2, [7.0])
        assert (len(github.seen("/statuses")), len(github.statuses)) == (3, 1)


async def test_an_answer_that_comes_in_pieces_is_read_whole() -> None:
    """`read_answer` reads to the end of the body (up to its limit): one read of the
    stream gives what has come so far, so a 2xx whose JSON came in two pieces had its
    first alone read, and `data` was None (not JSON) for a call that succeeded."""
    body = json.dumps({"items": ["x" * 100] * 1000}).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[:1000])
        await asyncio.sleep(0.05)  # the rest after the first piece was read
        await response.write(body[1000:])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/x", handler)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        result = await call(session, "POST", str(server.make_url("/x")), headers={})
    assert (result.ok, result.data) == (True, json.loads(body))


@pytest.mark.parametrize(
    ("kind", "cut_short"),
    [("cut_short", True), ("cut_short:chunked", True), ("undecodable", False)],
)
async def test_read_answer_tells_a_body_cut_short_from_one_that_does_not_decode(
    kind: str, cut_short: bool
) -> None:
    """`Read.cut_short`: a body that stopped early (a read asked again may come whole)
    apart from one that came whole and does not decode (asked again, it lies again),
    where both were one "could not be read" and a provider's query cut short was not
    asked again."""
    from common.answers import read_answer
    from tests.fakes.vercel import OLD, PROJECT, FakeVercel

    async with FakeVercel(token="v") as vercel, aiohttp.ClientSession() as session:
        vercel.start_rolling_release(PROJECT, OLD)
        vercel.fail(kind, times=1)
        url = f"{vercel.url}/v1/projects/{PROJECT}/rolling-release"
        async with session.get(url, headers={"Authorization": "Bearer v"}) as response:
            read = await read_answer(response, 1024 * 1024)
    assert (response.status, read.body, read.cut_short) == (200, b"", cut_short)
    assert read.unread.startswith("(its body could not be read: "), read.unread


async def test_a_2xx_cut_short_is_taken_not_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Rolling Releases approval whose 2xx answer is cut short was acted on: it is not
    sent again (a second approval would move the release one stage further), as a 2xx
    that does not decode. Behaviour kept when `read_answer` told the two apart."""
    from tests.fakes.vercel import OLD, PROJECT, FakeVercel

    waits_asked_for(monkeypatch, jitter=0.0)
    async with FakeVercel(token="v") as vercel, aiohttp.ClientSession() as session:
        vercel.start_rolling_release(PROJECT, OLD)
        vercel.fail("cut_short", times=1)
        result = await call(
            session,
            "POST",
            f"{vercel.url}/v1/projects/{PROJECT}/rolling-release/approve-stage",
            headers={"Authorization": "Bearer v"},
            body=b'{"nextStageIndex": 1, "canaryDeploymentId": "%s"}' % OLD.encode(),
        )
        assert (result.ok, result.status, result.attempts, result.data) == (True, 200, 1, None)
        assert (len(vercel.seen("approve-stage")), len(vercel.approvals)) == (1, 1)


@pytest.mark.parametrize("kind", ["cut_short", "cut_short:chunked"])
async def test_a_read_whose_2xx_is_cut_short_is_asked_again(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A GET is a read: its 2xx cut short (fewer bytes than its Content-Length, then the
    connection closed) is asked again, as a provider's query is, where it was taken as an
    answer with no data (`ok`, `data` None): the Rolling Release read before an approval
    said "no rolling release" and the approval was skipped, a status list said "none
    posted". Cut short on every attempt: not `ok`, given up (tried again later), the
    error naming the cut."""
    from tests.fakes.vercel import OLD, PROJECT, FakeVercel

    waits_asked_for(monkeypatch, jitter=0.0)
    async with FakeVercel(token="v") as vercel, aiohttp.ClientSession() as session:
        vercel.start_rolling_release(PROJECT, OLD)
        url = f"{vercel.url}/v1/projects/{PROJECT}/rolling-release"
        vercel.fail(kind, times=1)
        result = await call(session, "GET", url, headers={"Authorization": "Bearer v"})
        assert (result.ok, result.status, result.attempts) == (True, 200, 2)
        assert result.data["rollingRelease"]["canaryDeployment"] == {"id": OLD}
        assert len(vercel.seen("/rolling-release")) == 2
        vercel.fail(kind)  # every attempt
        result = await call(session, "GET", url, headers={"Authorization": "Bearer v"})
        assert (result.ok, result.status, result.attempts, result.gave_up) == (False, 200, 4, True)
        assert result.data is None
        assert (result.error or "").startswith("HTTP 200: (its body could not be read: ")
        assert len(vercel.seen("/rolling-release")) == 6


async def test_a_read_whose_2xx_does_not_decode_is_not_ok_and_not_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A GET's 2xx that came whole and does not decode (a proxy's mangling) lies again if
    asked again: not retried, and not `ok` either, where it was an answer with no data
    (a status list read as empty, a Rolling Release as none)."""
    from tests.fakes.vercel import OLD, PROJECT, FakeVercel

    waits_asked_for(monkeypatch, jitter=0.0)
    async with FakeVercel(token="v") as vercel, aiohttp.ClientSession() as session:
        vercel.start_rolling_release(PROJECT, OLD)
        vercel.fail("undecodable", times=1)
        url = f"{vercel.url}/v1/projects/{PROJECT}/rolling-release"
        result = await call(session, "GET", url, headers={"Authorization": "Bearer v"})
        assert (result.ok, result.status, result.attempts, result.gave_up) == (
            False,
            200,
            1,
            False,
        )
        assert result.error == (
            "HTTP 200: (its body could not be read: Can not decode content-encoding: gzip)"
        )
        assert len(vercel.seen("/rolling-release")) == 1


@pytest.mark.parametrize(
    ("callback", "run"),
    [
        (
            "https://api.github.com/repos/acme/web/actions/runs/1234/deployment_protection_rule",
            "https://api.github.com/repos/acme/web/actions/runs/1234",
        ),
        (
            "https://ghe.example/api/v3/repos/a/b/actions/runs/7/deployment_protection_rule",
            "https://ghe.example/api/v3/repos/a/b/actions/runs/7",
        ),
        ("https://api.github.com/repos/acme/web/actions/runs/x/deployment_protection_rule", None),
        ("https://api.github.com/repos/acme/web/actions/runs/1/other", None),
    ],
)
def test_a_protection_rules_run_is_named_by_its_callback_url(
    callback: str, run: str | None
) -> None:
    from agent.integrations.runs import run_url

    assert run_url(callback) == run


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ({"status": "completed", "conclusion": "cancelled"}, True),
        ({"status": "completed", "conclusion": "success"}, False),
        ({"status": "waiting", "conclusion": None}, False),
        ({"status": "in_progress"}, False),
        (None, False),
        (["completed", "cancelled"], False),
    ],
)
def test_only_a_completed_cancelled_run_is_one_nothing_waits_in(
    run: object, expected: bool
) -> None:
    from agent.integrations.runs import cancelled

    assert cancelled(run) is expected


def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """`clients.call`'s waits, not waited: each moves a virtual clock (`[0]`) on, which a
    fake reads to tell how far into its rate limit a request comes."""
    now = [0.0]

    async def sleep(delay: float) -> None:
        now[0] += delay

    fake = {**{name: getattr(asyncio, name) for name in asyncio.__all__}, "sleep": sleep}
    monkeypatch.setattr(clients, "asyncio", types.SimpleNamespace(**fake))
    monkeypatch.setattr(clients, "random", types.SimpleNamespace(random=lambda: 0.0))
    return now


@pytest.mark.parametrize(
    ("limited_for", "requests", "ok"),
    [(45.0, [0.0, 45.0], True), (200.0, [0.0], False)],
)
async def test_a_rate_limit_longer_than_one_wait_is_waited_out_not_asked_inside(
    monkeypatch: pytest.MonkeyPatch, limited_for: float, requests: list[float], ok: bool
) -> None:
    """A 429 whose `Retry-After` asks for longer than `max_backoff` (30 s): the call waited
    30 s and asked again inside the limit (GitHub: an integration that goes on asking
    while limited may be banned), three times, before it gave up. It waits the time asked
    (the waits it spans spent from its budget, so a call lasts no longer than before),
    or, past its budget, gives up at once, saying so: its caller tries again later."""
    now = virtual_clock(monkeypatch)
    seen: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(now[0])
        if now[0] < limited_for:
            left = str(round(limited_for - now[0]))
            return web.json_response(
                {"message": "slow down"}, status=429, headers={"Retry-After": left}
            )
        return web.json_response({"id": 1}, status=201)

    app = web.Application()
    app.router.add_post("/statuses", handler)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        result = await call(
            session, "POST", str(server.make_url("/statuses")), headers={}, body=b"{}"
        )
    assert seen == requests
    assert (result.ok, result.attempts) == (ok, len(requests))
    if not ok:
        assert result.gave_up and result.status == 429
        assert (result.error or "").endswith("(asked to wait 3m20s, past this call's retries)"), (
            result.error
        )


async def test_an_attempt_whose_connection_was_never_made_is_not_one_the_provider_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`CallResult.unanswered` counts attempts the provider may have acted on though their
    answer was lost: a refused connection sent nothing, where it counted, and a gate's
    answer refused (422) after it was taken for an answer taken earlier (no page) though
    nothing had gone out."""
    from tests.e2e.crash import free_port

    port = free_port()
    runners: list[web.AppRunner] = []

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"message": "Validation Failed"}, status=422)

    async def sleep(delay: float) -> None:  # GitHub comes up during the wait
        if not runners:
            app = web.Application()
            app.router.add_post("/answer", handler)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)

    fake = {**{name: getattr(asyncio, name) for name in asyncio.__all__}, "sleep": sleep}
    monkeypatch.setattr(clients, "asyncio", types.SimpleNamespace(**fake))
    try:
        async with aiohttp.ClientSession() as session:
            result = await call(
                session, "POST", f"http://127.0.0.1:{port}/answer", headers={}, body=b"{}"
            )
    finally:
        for runner in runners:
            await runner.cleanup()
    assert (result.ok, result.status, result.attempts, result.unanswered) == (False, 422, 2, 0)


async def test_a_stop_lets_go_of_a_read_out_at_once_and_waits_for_a_call_that_acts() -> None:
    """A stop while an attempt is out: a read (GET) is let go of at once, `left` (it acts
    on nothing: the next start asks again), where the call waited for its answer; a POST
    (it acts) is answered and taken, as before."""
    leaving = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        leaving.set()  # the stop comes while the request is out
        await asyncio.sleep(0.3)
        return web.json_response({"id": 1})

    app = web.Application()
    app.router.add_route("*", "/slow", slow)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        url = str(server.make_url("/slow"))
        read = await call(session, "GET", url, headers={}, leaving=leaving)
        leaving = asyncio.Event()
        acted = await call(session, "POST", url, headers={}, body=b"{}", leaving=leaving)
    # before: the read waited for its answer too (ok, its data taken)
    assert (read.ok, read.left, read.attempts, read.data) == (False, True, 1, None)
    assert (acted.ok, acted.left, acted.data) == (True, False, {"id": 1})


@pytest.mark.parametrize("taken_back", [True, False], ids=["taken-back", "taken-over"])
async def test_a_wait_asked_for_is_kept_by_the_tasks_keeper_and_a_lost_claim_sends_no_more(
    monkeypatch: pytest.MonkeyPatch, taken_back: bool
) -> None:
    """A `Retry-After` within one call is handed to the keeper the task set (`keeping`)
    before the call waits it, so a kill or a stop in it leaves it stored; our own backoff
    (asked by no one) is not. After the wait, a claim another sender took over meanwhile
    ends the call with nothing more sent (`lost`), counted at the server."""
    from agent.integrations.asked_waits import keeping

    waits = waits_asked_for(monkeypatch, jitter=0.5)
    answers = [web.Response(status=503), web.Response(status=503, headers={"Retry-After": "7"})]
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        return answers[len(seen) - 1] if len(seen) <= len(answers) else web.json_response({})

    class Keeper:
        def __init__(self) -> None:
            self.kept: list[float] = []
            self.resumed = 0
            self.store_away = False
            self.not_back = ""

        async def keep(self, seconds: float) -> None:
            self.kept.append(seconds)

        async def resume(self) -> bool:
            self.resumed += 1
            return taken_back

    others: list[str] = []

    async def other_handler(request: web.Request) -> web.Response:
        others.append(request.path)
        if len(others) == 1:
            return web.Response(status=503, headers={"Retry-After": "3"})
        return web.json_response({})

    keeper = Keeper()
    app = web.Application()
    app.router.add_post("/statuses", handler)
    app.router.add_post("/other", other_handler)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        with keeping(keeper):
            result = await call(session, "POST", str(server.make_url("/statuses")), headers={})
            # a task it spawns (its context copied) does not keep its waits under the claim
            other = await asyncio.create_task(
                call(session, "POST", str(server.make_url("/other")), headers={})
            )
    assert waits[:2] == [0.5, 7.0], waits  # a backoff of ours, then the asked wait
    assert (keeper.kept, keeper.resumed) == ([7.0], 1)
    assert other.ok and waits[2:] == [3.0], waits
    if taken_back:
        assert result.ok and result.attempts == 3
        assert len(seen) == 3
    else:
        assert (result.ok, result.lost, result.attempts) == (False, True, 2)
        assert len(seen) == 2  # nothing more of it


async def test_a_github_refusal_is_quoted_by_its_message_in_githubs_shape() -> None:
    """GitHub's error body is `{"message", "documentation_url"}`: the fake answered a
    scripted refusal `{"detail": …}` and a path or method it has no route for with
    aiohttp's text `404: Not Found`, so a reading of `detail` would have passed. The
    call's error quotes GitHub's `message` as it came, whatever the refusal, and only it:
    it quoted the JSON around it too."""
    from tests.fakes.github import DEPLOYMENT_ID, REPOSITORY, FakeGitHub

    async with FakeGitHub(token="gh") as github, aiohttp.ClientSession() as session:
        statuses = f"{github.url}/repos/{REPOSITORY}/deployments/{DEPLOYMENT_ID}/statuses"
        refusals = [
            ("POST", statuses, "fake failure 422"),
            ("POST", f"{github.url}/repos/{REPOSITORY}/deployment/{DEPLOYMENT_ID}", "Not Found"),
            ("DELETE", statuses, "Not Found"),  # GitHub: a 404, not a 405
        ]
        for method, url, message in refusals:
            if message.startswith("fake"):
                github.fail("422", times=2)  # the look below, then the call
            headers = {"Authorization": "Bearer gh"}
            async with session.request(method, url, headers=headers) as answer:
                assert answer.content_type == "application/json", (method, url)
                body = await answer.json()
            assert body == {"message": message, "documentation_url": "https://docs.github.com/rest"}
            result = await call(session, method, url, headers=headers, body=b"{}", attempts=1)
            assert (result.ok, result.status) == (False, answer.status)
            # GitHub's message, not its JSON (`{"message": …, "documentation_url": …}`)
            assert result.error == f"HTTP {answer.status}: {message}"


async def test_a_vercel_refusal_is_quoted_by_its_message_in_vercels_shape() -> None:
    """Vercel's error body is `{"error": {"code", "message"}}`: the fake answered
    `fail("unavailable")` `{"detail": …}` and a path or method it has no route for with
    aiohttp's text `404: Not Found`, so a reading of `detail` would have passed. The
    call's error quotes Vercel's `message` and `code` as they came, whatever the refusal,
    and only them: it quoted the JSON around them too."""
    from tests.fakes.vercel import OLD, PROJECT, FakeVercel

    async with FakeVercel(token="vc") as vercel, aiohttp.ClientSession() as session:
        rollback = f"{vercel.url}/v1/projects/{PROJECT}/rollback/{OLD}"
        refusals = [
            ("POST", rollback, 503, "service unavailable"),
            ("POST", f"{vercel.url}/v1/projects/{PROJECT}/rollbacks/{OLD}", 404, None),
            ("DELETE", rollback, 404, None),
        ]
        for method, url, status, message in refusals:
            if message is not None:
                vercel.fail("unavailable", times=2)  # the look below, then the call
            headers = {"Authorization": "Bearer vc"}
            async with session.request(method, url, headers=headers) as answer:
                assert (answer.status, answer.content_type) == (status, "application/json")
                error = (await answer.json())["error"]
            assert set(error) == {"code", "message"}, (method, url)
            assert message is None or error["message"] == message
            result = await call(session, method, url, headers=headers, body=b"{}", attempts=1)
            assert (result.ok, result.status) == (False, status)
            # Vercel's message and code, not its JSON (`{"error": {"code": …`)
            assert result.error == f"HTTP {status}: {error['message']} ({error['code']})"
