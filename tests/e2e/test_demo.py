"""The README's first command: `postflight demo` passes the good deploy and rolls the bad
one back exactly once, on the default (sequential, pass on evidence) policy."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_process import sigint_at_default
from tests.heavy import HEAVY

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400), HEAVY]

OVERLOADED = "v1.1.0: INCONCLUSIVE — agent overloaded:"
"""The good deploy's ending when the demo's agent could not measure its probes: its own
event loop was stalled past a tenth of their latencies, so most were dropped and no rule
on them is judged (as designed, `agent.windows.overload`); seen at load average 12 (255 of
360 probes' latencies) when the agent shared its loop with the demo's service and
receivers, and still on a machine busy enough now that it runs in a process of its own."""

ADVICE = "run `postflight demo` again when the machine is less busy."
"""What the demo then tells its user (`agent.demo.overload_advice`), its exit status 1."""


OFFLINE = [
    "unshare",
    "--map-root-user",
    "--net",
    "sh",
    "-c",
    'ip link set lo up && exec "$@"',
    "sh",
]
"""A command's prefix that runs it with no network but its own loopback: a network
namespace of its own (as an unprivileged user, mapped to root in it; as root, root), `lo`
brought up. Contract §1: the demo "needs no network and no accounts"."""


@functools.cache
def offline() -> tuple[list[str], str]:
    """`(OFFLINE, "")` where this machine can make such a namespace, else `([], why not)`:
    the demo then runs with the machine's network, and
    `test_the_demo_runs_with_no_network_but_its_loopback` skips, saying why (a failure
    under POSTFLIGHT_REQUIRE_ALL=1, as for any missing binary)."""
    missing = [name for name in ("unshare", "ip") if shutil.which(name) is None]
    if missing:
        return [], f"{' and '.join(missing)} not found (util-linux, iproute2)"
    tried = subprocess.run([*OFFLINE, "true"], capture_output=True, text=True, check=False)
    if tried.returncode != 0:
        said = " ".join(tried.stderr.split()) or "nothing said"
        return [], f"unshare refused a network namespace (exit {tried.returncode}: {said})"
    return OFFLINE, ""


UNREACHABLE = """
import errno, socket
try:
    socket.create_connection(("1.1.1.1", 53), timeout=5)
except OSError as error:
    print(errno.errorcode.get(error.errno or 0, "timed out"))
else:
    print("connected")
"""
"""Connects to a public address: what it prints, `ENETUNREACH` where there is no network."""


def test_the_demo_runs_with_no_network_but_its_loopback() -> None:
    """The demo test's "needs no network" part: where no namespace can be made, the demo
    test runs on the machine's network, and this says so (a skip with its reason) rather
    than passing as though it had checked it; where one can, nothing outside it is
    reachable from it."""
    prefix, why_not = offline()
    if not prefix:
        pytest.skip(f"the demo test ran with this machine's network: {why_not}")
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", UNREACHABLE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["ENETUNREACH"], probe.stdout + probe.stderr


NOWHERE_PROXY = "http://127.0.0.1:9"
"""A proxy nothing listens at: a request the demo sent through one would fail."""


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*offline()[0], sys.executable, "-m", "agent", "demo"],
        capture_output=True,
        text=True,
        timeout=180,  # 20 s alone; its agent's start and baseline wait take longer when busy
        check=False,
        env=env,
    )


def test_the_demo_passes_the_good_deploy_and_rolls_back_the_bad_one_once(
    tmp_path: Path,
) -> None:
    """Run in a shell that has overrides meant for a real agent: the demo is self-contained
    and ignores them (it once wrote both its windows into `$POSTFLIGHT__STORE__URL`'s
    store); with no network but loopback (`offline`, where this machine can make that;
    else `test_the_demo_runs_with_no_network_but_its_loopback` skips), a proxy that does
    not exist and an empty home (contract §1: it "needs no network and no accounts"). One
    run for both, as the demo takes 20 s; a second only when the first said its agent was
    overloaded (a busy machine's, not the demo's failure), its bad deploy still rolled back
    once: the good one must then pass."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = elsewhere / "postflight.yaml"
    config.write_text("server: {listen: 'not an address'}\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "POSTFLIGHT__STORE__URL": f"sqlite:///{elsewhere}/leak.db",
        "POSTFLIGHT__SERVER__API_TOKENS": "not-json",
        "POSTFLIGHT__ENVIRONMENTS__DEMO__WINDOW": "1s",
        "POSTFLIGHT_CONFIG": str(config),
        "HOME": str(home),
        **dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"), NOWHERE_PROXY),
    }
    done = run_demo(env)
    out = done.stdout + done.stderr
    if done.returncode == 1 and OVERLOADED in out:
        assert "v1.2.0-bad: ROLLED_BACK" in out and "rollbacks=1" in out, out[-4000:]
        assert ADVICE in " ".join(out.split()), out[-4000:]
        done = run_demo(env)
        out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "v1.1.0: PASSED" in out
    assert "v1.2.0-bad: ROLLED_BACK" in out
    assert "the bad one was rolled back once" in out
    assert "(its own process, pid " in out
    assert "latencies kept" in out  # the baseline learnt before the first deploy
    # what its rounds and verdicts say, for a reader who has not read "How Postflight
    # decides": a good deploy's first rounds read `probe-errors=inconclusive (0%)`, and the
    # bad one's verdict `evidence 2,502 to 1, 526 needed`, both unexplained
    said = " ".join(out.split())
    assert "inconclusive until the evidence shows it within its bound (pass)" in said, out
    assert "'evidence N to 1, M needed' is the odds the data give for a regression" in said
    # a new user's first run warns of nothing in the demo's own configuration: it said
    # "⚠ rule probe-errors: its max bound is tighter than the smallest change it can
    # detect … error_rate 0.114 or more" at each deploy (a max of 0.05 at 40 probes a round)
    assert "⚠" not in out, out[-4000:]
    # nothing written where the overrides point, nor said
    assert sorted(p.name for p in elsewhere.iterdir()) == ["postflight.yaml"]
    assert str(elsewhere) not in out


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_demo_stopped_midway_stops_its_agent_and_removes_its_temp_dir(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """CTRL-C, or a SIGTERM (a terminal closed, `timeout 10 postflight demo`), once its
    agent runs: exit 130 or 143, no traceback, its agent stopped and its temp dir (store,
    config) gone. A SIGTERM killed the demo outright (exit -15), its temp dir left behind."""
    with sigint_at_default():  # a suite run in the background ignores SIGINT, and the demo did
        demo = subprocess.Popen(
            [sys.executable, "-m", "agent", "demo"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TMPDIR": str(tmp_path)},
        )
    assert demo.stdout is not None
    started = ""
    for line in demo.stdout:
        if "(its own process, pid " in line:
            started = line
            break
    assert started, demo.communicate(timeout=60)
    demo.send_signal(sig)
    out, err = demo.communicate(timeout=60)
    assert demo.returncode == code, (out, err)
    assert "Traceback" not in err, err
    word = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}[sig]
    # it ended silently, its story cut off mid-line
    removed = f"its agent stopped and its temp dir removed (exit {code})"
    assert f"postflight demo: {word}; {removed}" in err, err
    assert not list(tmp_path.glob("postflight-demo-*")), list(tmp_path.iterdir())
    agent_pid = int(started.rsplit("pid ", 1)[1].split(")")[0])
    stat = Path(f"/proc/{agent_pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in "ZX"
