"""A throwaway PostgreSQL for the tests (a pytest plugin, see tests/conftest.py).

Started once per session from the machine's server binaries (initdb, pg_ctl, postgres),
in a temporary directory, on a free port of 127.0.0.1 with trust authentication, and torn
down at the end. PostgreSQL refuses to run as root, so when the tests run as root the
cluster belongs to an unprivileged user (`postgres`, else `nobody`). Each test that asks
for `pg_url` gets a fresh database of its own.

Without the binaries the tests that need it skip with the reason (and fail under
POSTFLIGHT_REQUIRE_ALL=1, see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import glob
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "postflight"


def _bindir() -> Path | None:
    """A directory holding initdb, pg_ctl and postgres: $POSTFLIGHT_PG_BINDIR, PATH, Debian's."""
    candidates: list[str] = []
    if os.environ.get("POSTFLIGHT_PG_BINDIR"):
        candidates.append(os.environ["POSTFLIGHT_PG_BINDIR"])
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
        candidates.append(os.path.dirname(on_path))
    # Debian keeps server binaries off PATH: /usr/lib/postgresql/<major>/bin, newest first
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(debian, key=lambda d: _major(Path(d).parent.name), reverse=True)
    for directory in candidates:
        if all(os.access(Path(directory, b), os.X_OK) for b in SERVER_BINARIES):
            return Path(directory)
    return None


def _major(name: str) -> int:
    try:
        return int(name)
    except ValueError:
        return 0


@dataclass(frozen=True)
class PgCluster:
    """A running throwaway cluster; `url()` names one of its databases (no password)."""

    host: str
    port: int
    user: str
    socket_dir: Path
    runner: _Runner | None = field(default=None, repr=False, compare=False)

    def stop(self) -> None:
        """Stop the server, its connections cut (`pg_ctl -m fast`): a store outage for
        the tests that need one, e.g. the chaos harness's `store_outage`; `start` brings
        it back. Not `-m immediate`, a crash: with `synchronous_commit=off` it loses the
        last commits, which were answered (a chaos run saw a window's last round and its
        rollback's attempt gone after the restart, and the rollback sent again)."""
        assert self.runner is not None
        data = self.runner.home / "data"
        stopped = self.runner.run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        if stopped.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not stop: {stopped.stderr}")

    def start(self) -> None:
        """Start the stopped server again, on its port and data directory."""
        assert self.runner is not None
        started = _pg_ctl_start(self.runner, self.port)
        if started.returncode != 0:
            log = self.runner.home / "server.log"
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else started.stderr
            raise RuntimeError(f"PostgreSQL did not start again on port {self.port}:\n{tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    async def create_database(self) -> str:
        """The URL of a fresh, empty place for one test's tables.

        A schema, reached through the URL's `search_path` (asyncpg sends unknown query
        parameters as server settings): ~5 ms, where CREATE DATABASE copies a template
        and checkpoints (~50-300 ms). To the store it is just as empty a database.
        """
        import asyncpg

        name = f"t_{uuid.uuid4().hex[:16]}"
        conn = await asyncpg.connect(self.url(), timeout=10)
        try:
            await conn.execute(f'CREATE SCHEMA "{name}"')
        finally:
            await conn.close()
        return f"{self.url()}?search_path={name}"

    async def create_migrated_database(self) -> str:
        """As `create_database`, with the store's tables in it: a copy of the schema the
        store's own migrations made once for this process on this cluster (`_migrated`),
        in one round trip, where each test's store ran every migration's statements one
        by one at its open. The migrations themselves still run from empty at the open
        of every `pg_url` test's store, and once here."""
        import asyncpg

        script = await _migrated(self)
        name = f"t_{uuid.uuid4().hex[:16]}"
        conn = await asyncpg.connect(self.url(), timeout=10)
        try:
            await conn.execute(
                f'CREATE SCHEMA "{name}";' + script.replace(f"{MIGRATED}.", f'"{name}".')
            )
        finally:
            await conn.close()
        return f"{self.url()}?search_path={name}"


MIGRATED = "postflight_migrated"
"""The schema the store's migrations make once a process on each cluster, to copy."""

_MIGRATED_SCRIPTS: dict[Path, str] = {}
"""Each cluster's (by its directory) migrated schema, as SQL making it again."""


async def _migrated(cluster: PgCluster) -> str:
    """SQL making `cluster`'s `MIGRATED` schema again, its tables and its rows (the
    schema's version): made by a store's open, dumped by `pg_dump`, once."""
    import asyncpg

    made = _MIGRATED_SCRIPTS.get(cluster.socket_dir)
    if made is not None:
        return made
    from agent.store.postgres import PostgresStore

    conn = await asyncpg.connect(cluster.url(), timeout=10)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{MIGRATED}"')
    finally:
        await conn.close()
    store = PostgresStore(f"{cluster.url()}?search_path={MIGRATED}")
    await store.open()
    await store.close()
    dumped = await asyncio.to_thread(_dump, cluster, MIGRATED)
    # its statements only: not psql's commands (\restrict), the session's settings, the
    # schema itself (made under each copy's name)
    skipped = ("--", "\\", "SET ", "SELECT pg_catalog.set_config", "CREATE SCHEMA")
    script = "\n".join(line for line in dumped.splitlines() if not line.startswith(skipped))
    _MIGRATED_SCRIPTS[cluster.socket_dir] = script
    return script


def _dump(cluster: PgCluster, schema: str) -> str:
    """`schema` as `pg_dump` writes it: its tables and their rows, as SQL."""
    bindir = _bindir()
    assert bindir is not None and cluster.runner is not None
    where = ["-h", cluster.host, "-p", str(cluster.port), "-U", cluster.user]
    what = [f"--schema={schema}", "--inserts", "--no-owner", "--no-privileges", "postgres"]
    dumped = subprocess.run(
        [str(bindir / "pg_dump"), *where, *what],
        env=cluster.runner.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if dumped.returncode != 0:
        raise RuntimeError(f"pg_dump of the {schema} schema failed: {dumped.stderr}")
    return dumped.stdout


class _Runner:
    """Runs the server binaries as an unprivileged user when we are root."""

    def __init__(self, bindir: Path, home: Path) -> None:
        self.bindir = bindir
        self.home = home
        self.kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = None
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    account = pwd.getpwnam(name)
                    break
            if account is None:
                pytest.skip("running as root and no `postgres` or `nobody` user to run PostgreSQL")
            # the same as `runuser -u postgres --`, without depending on util-linux
            self.kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            os.chown(home, account.pw_uid, account.pw_gid)
        # PG* variables of the caller's environment must not steer our private cluster
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.env.update(HOME=str(home), LC_ALL="C", LANG="C")

    def run(self, binary: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / binary), *args],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self.kwargs,
        )


_INITIALISED: dict[Path, Path] = {}
"""This process's initdb'ed data directory for each server's bindir, never started: each
cluster is a copy (`cp -a`, its owner and modes kept), where each ran initdb (4.2 s at
load 23, the copy 1.2 s; a worker starts its session's cluster and one for each test that
stops or freezes its own, `own_pg_cluster`)."""

SHARED_INITDB_ENV = "POSTFLIGHT_PG_INITDB"
"""A directory the run's processes share (`pytest_configure`'s, on the controller): the
first to need a cluster runs initdb there, the others copy it, where each xdist worker
ran initdb of its own (five at a whole run's start, each 0.84 s of CPU and 6 s of wall at
load 14)."""


def pytest_configure(config: pytest.Config) -> None:
    """On the run's first process (the controller, or a run without xdist): the directory
    of `SHARED_INITDB_ENV`, in the environment before the workers start, so they and the
    processes they start inherit it; removed as the run ends."""
    if os.environ.get(SHARED_INITDB_ENV):  # a worker, or a run started inside one
        return
    shared = Path(
        tempfile.mkdtemp(prefix="postflight-pg-initdb-", dir="/tmp" if os.geteuid() == 0 else None)
    )
    shared.chmod(0o755)  # the server's user reaches its initdb'ed directory inside
    os.environ[SHARED_INITDB_ENV] = str(shared)

    def removed() -> None:
        os.environ.pop(SHARED_INITDB_ENV, None)
        shutil.rmtree(shared, ignore_errors=True)

    config.add_cleanup(removed)


def _initialised(runner: _Runner) -> Path:
    """`_INITIALISED`'s directory for `runner`'s binaries: the run's shared one
    (`SHARED_INITDB_ENV`), made by initdb by the first process to ask, under a lock the
    others wait on; without one, this process's own, removed at exit."""
    made = _INITIALISED.get(runner.bindir)
    if made is not None and made.is_dir():
        return made
    shared = os.environ.get(SHARED_INITDB_ENV)
    if shared is None or not Path(shared).is_dir():
        home = Path(tempfile.mkdtemp(prefix="postflight-pg-initdb-", dir=runner.home.parent))
        atexit.register(shutil.rmtree, home, ignore_errors=True)
        data = _initdb(runner.bindir, home)
    else:
        key = hashlib.sha256(str(runner.bindir).encode()).hexdigest()[:16]
        home = Path(shared) / key
        with (Path(shared) / f"{key}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes
            done = Path(shared) / f"{key}.done"
            if done.exists():
                data = home / "data"
            else:
                shutil.rmtree(home, ignore_errors=True)  # a first try that failed midway
                home.mkdir()
                data = _initdb(runner.bindir, home)
                done.touch()
    _INITIALISED[runner.bindir] = data
    return data


def _initdb(bindir: Path, home: Path) -> Path:
    """A data directory in `home` made by `bindir`'s initdb, owned by the server's user as
    the clusters copied from it are."""
    template = _Runner(bindir, home)
    data = home / "data"
    init = template.run(
        "initdb",
        "-D",
        str(data),
        "-U",
        SUPERUSER,
        "--auth=trust",
        "--no-sync",
        "-E",
        "UTF8",
        "--locale=C",
    )
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
    return data


def _start_cluster(runner: _Runner) -> PgCluster:
    home = runner.home
    data = home / "data"
    log = home / "server.log"
    copied = subprocess.run(
        ["cp", "-a", str(_initialised(runner)), str(data)],
        capture_output=True,
        text=True,
        check=False,
    )
    if copied.returncode != 0:
        raise RuntimeError(f"copying the initialised cluster failed: {copied.stderr}")
    last = ""
    for _ in range(3):  # another process may take the free port before the server binds it
        port = free_port()
        start = _pg_ctl_start(runner, port)
        if start.returncode == 0:
            return PgCluster("127.0.0.1", port, SUPERUSER, home, runner)
        last = log.read_text(errors="replace") if log.exists() else start.stderr
        if "could not bind" not in last and "in use" not in last:
            break
    raise RuntimeError(f"PostgreSQL did not start:\n{last[-4000:]}")


def _pg_ctl_start(runner: _Runner, port: int) -> subprocess.CompletedProcess[str]:
    home = runner.home
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={home}"
        # durability is pointless for a cluster thrown away at the end of the session
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    data, log = home / "data", home / "server.log"
    return runner.run(
        "pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", options, "start"
    )


def _stop_cluster(runner: _Runner) -> None:
    data = runner.home / "data"
    stop = runner.run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop", timeout=30)
    pidfile = data / "postmaster.pid"
    if stop.returncode != 0 and pidfile.exists():
        # pg_ctl could not stop the server it started for us: signal that one pid only
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGQUIT)


@contextlib.contextmanager
def running_cluster(bindir: Path) -> Iterator[PgCluster]:
    """A throwaway cluster from the server binaries in `bindir`, removed on exit."""
    # /tmp, not a private TMPDIR: the unprivileged server user must reach the directory,
    # and a unix socket path must stay under ~100 characters
    home = Path(
        tempfile.mkdtemp(prefix="postflight-pg-", dir="/tmp" if os.geteuid() == 0 else None)
    )
    try:
        runner = _Runner(bindir, home)
        try:
            yield _start_cluster(runner)
        finally:
            _stop_cluster(runner)  # also after a failed start: pg_ctl may have left it running
    finally:
        shutil.rmtree(home, ignore_errors=True)


def server_bindir() -> Path | None:
    """Where the PostgreSQL server binaries are, if anywhere (see `_bindir`)."""
    return _bindir()


def _bindir_or_skip() -> Path:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        pytest.skip("asyncpg is not installed: pip install -e '.[dev]'")
    bindir = _bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in"
            " $POSTFLIGHT_PG_BINDIR, on PATH or in /usr/lib/postgresql/*/bin;"
            " install the Debian package `postgresql`"
        )
    return bindir


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster for the whole session (skips when the binaries are missing)."""
    with running_cluster(_bindir_or_skip()) as cluster:
        yield cluster


@pytest.fixture
def own_pg_cluster() -> Iterator[PgCluster]:
    """A cluster of the test's own, for a test that stops and starts it (a store outage):
    the session's is shared by the worker's other tests, which a failed restart would
    break. Costs an initdb and a start, ~2 s."""
    with running_cluster(_bindir_or_skip()) as cluster:
        yield cluster


@pytest.fixture
async def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh PostgreSQL database of its own for a PostgreSQL-only test."""
    return await pg_cluster.create_database()
