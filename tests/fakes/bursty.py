"""A service whose errors come in bursts, in a process of its own, for A/A tests of a
loaded agent.

Why a process: a target on the agent's own event loop (or in its process) answers only
when the agent's process runs, so a stall of the agent's (its loop's or the host's
starving of its process) is the target's silence too, a timeout the agent rightly charges
to the target (`checks.lag.UNANSWERED`: no byte in the socket). Windows stall the agent
more than background runs do: in-process, an A/A window's rounds read 2-14% timeouts
against its background runs' 1-2% at load 20, and the bursty A/A test rolled one back.
Why bursts by request count: a burst by wall-clock slot makes which probes fail depend on
the agent's timing; by count, each block of `block` requests (a round's probes) is bad or
not, however the agent paces them, the window's as the baseline's.

Run: `python -m tests.fakes.bursty SEED ERROR_RATE BURST BLOCK`; it prints its port.
`GET /bursts`: how many blocks were bad so far.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Sequence

import aiohttp
from aiohttp import web

HOST = "127.0.0.1"


class BurstyService:
    """Each block of `block` requests is bad with probability `burst`; in a bad block,
    `error_rate / burst` of the requests fail (503): `error_rate` of all, in bursts."""

    def __init__(self, seed: int, error_rate: float, burst: float, block: int) -> None:
        self.rng = random.Random(seed)
        self.error_rate, self.burst, self.block = error_rate, burst, block
        self.requests = 0
        self.bad_blocks: dict[int, bool] = {}

    def fails(self) -> bool:
        block = self.requests // self.block
        self.requests += 1
        if block not in self.bad_blocks:
            self.bad_blocks[block] = self.rng.random() < self.burst
        return self.bad_blocks[block] and self.rng.random() < self.error_rate / self.burst

    async def health(self, request: web.Request) -> web.Response:
        if self.fails():
            return web.json_response({"status": "error"}, status=503)
        return web.json_response({"status": "ok"})

    async def bursts(self, request: web.Request) -> web.Response:
        return web.json_response({"bad": sum(self.bad_blocks.values())})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/bursts", self.bursts)
        return app


async def serve(service: BurstyService) -> None:
    runner = web.AppRunner(service.app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site.port
    print(port, flush=True)
    await asyncio.Event().wait()


def main(argv: Sequence[str]) -> None:
    seed, error_rate, burst, block = argv
    asyncio.run(serve(BurstyService(int(seed), float(error_rate), float(burst), int(block))))


class BurstyProcess:
    """`BurstyService` in a child process: `await start()`, `url`, `await bad_bursts()`,
    `await stop()`."""

    def __init__(self, seed: int, error_rate: float, burst: float, block: int) -> None:
        self.args = (str(seed), str(error_rate), str(burst), str(block))
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.fakes.bursty", *self.args, stdout=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=30)
        self.port = int(line)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def bad_bursts(self) -> int:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/bursts") as answer:
            return int((await answer.json())["bad"])

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
