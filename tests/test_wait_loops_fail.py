"""Every wait loop in tests/ fails when it runs out: a loop polling for a condition
(a sleep, and a `break` or `return` once it came) that ends without it must say so, not
go on as if it had come. test_rollback_leave_waits's loop waited for a log line reworded
long before: it ran out its 10 s every run, and the test passed.

A loop passes when it has an `else:` (run when it ran out) that fails, or the statement
after it is an `assert`, a `raise` or a `pytest.fail(...)`. The few loops meant to end either way
are listed below, each with why.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent

ENDS_EITHER_WAY = {
    "e2e/chaos.py::Chaos.chaos": "a time-driven chaos schedule, not a wait",
    "checks/test_checks_cut_answers.py::"
    "test_a_request_cut_as_its_answer_comes_leaves_no_connection_for_the_collector": (
        "what is left when it runs out (`alive`) is what the test asserts is 0"
    ),
    "e2e/chaos.py::Chaos.settle": "notes what never settled (`stuck`), which the tests assert",
    "e2e/chaos.py::paused_woken": (
        "bench/ha_chaos.py's scenario, measured not asserted (see its `Findings`)"
    ),
    "e2e/chaos.py::sender_killed": "the pickup (`orphan_pickup_s`) is asserted by the test",
    "e2e/crash.py::for_at_most": "waits for what may not come: a trial counts it either way",
    "e2e/crash_alert.py::run_alert_trial": "returns the counts it saw, which the tests assert",
    "e2e/crash_gate.py::run_gate_trial": "returns the state it saw, which the tests assert",
    "e2e/pause_alert.py::run_paused_alert_trial": "returns the counts it saw, asserted",
    "e2e/test_integrations_cut_short_e2e.py::_stage_read": "returns what it read, asserted",
    "e2e/test_overload_e2e.py::"
    "test_a_2ms_services_answers_read_late_by_a_blocked_loop_are_no_latency_x2": (
        "one more window when the machine spoilt one: a retry, not a wait"
    ),
    "e2e/test_verdict_words_e2e.py::read_window": "reads the window whether or not it ended",
    "fakes/_server.py::FakeServer._unanswered": "a fake's hang, until the client leaves or its end",
    "fakes/prometheus.py::PrometheusProcess._ready": "returns whether it came; its caller raises",
}
"""`path::function` → why the loop in it is meant to end either way."""


def _own_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """`node`'s descendants, nested functions and classes left out (their loops are theirs)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        yield child
        yield from _own_nodes(child)


def _exits(loop: ast.For | ast.AsyncFor | ast.While) -> bool:
    """Whether `loop` ends early once it saw what it waited for: a `return`, or a `break`
    of its own (not an inner loop's)."""

    def walk(node: ast.AST, inner: bool) -> bool:
        for child in ast.iter_child_nodes(node):
            if isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
            ):
                continue
            if isinstance(child, ast.Return) or (isinstance(child, ast.Break) and not inner):
                return True
            if walk(child, inner or isinstance(child, ast.For | ast.AsyncFor | ast.While)):
                return True
        return False

    return any(walk(ast.Module(body=[s], type_ignores=[]), False) for s in loop.body)


def _reads_a_clock(node: ast.AST) -> bool:
    for each in ast.walk(node):
        if isinstance(each, ast.Call):
            func = each.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("monotonic", "time", "perf_counter"):
                return True
        if isinstance(each, ast.Name) and "deadline" in each.id:
            return True
    return False


def _waits(loop: ast.For | ast.AsyncFor | ast.While) -> bool:
    """Whether `loop` waits for something: it sleeps, and ends early once it came (a
    `return` or a `break` of its own), or its condition is the thing and a clock
    (`while not done() and time.monotonic() < deadline`)."""
    if not _sleeps(loop):
        return False
    if _exits(loop):
        return True
    return (
        isinstance(loop, ast.While)
        and isinstance(loop.test, ast.BoolOp)
        and isinstance(loop.test.op, ast.And)
        and any(_reads_a_clock(v) for v in loop.test.values)
        and not all(_reads_a_clock(v) for v in loop.test.values)
    )


def _sleeps(loop: ast.AST) -> bool:
    for node in _own_nodes(loop):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "sleep":
                return True
    return False


def _fails(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.Assert | ast.Raise):
        return True
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Attribute)
        and statement.value.func.attr == "fail"
    )


def _then_fails(after: list[ast.stmt]) -> bool:
    """Whether the statements after a loop fail straight away: an `assert`, a `raise` or
    a `pytest.fail`, maybe after a few plain statements (reading what to say)."""
    for statement in after:
        if _fails(statement):
            return True
        if not isinstance(statement, ast.Assign | ast.AnnAssign | ast.Expr):
            return False
    return False


def _loops_falling_through(path: Path) -> Iterator[tuple[str, int]]:
    """(`function`, line) of each wait loop in `path` that can end without what it waited
    for and go on silently."""
    tree = ast.parse(path.read_text(), str(path))

    def visit(node: ast.AST, scope: list[str], then: ast.stmt | None) -> Iterator[tuple[str, int]]:
        """`then`: the statement run after `node`'s body (a `with`'s or a `try`'s)."""
        for field in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            through = isinstance(node, ast.With | ast.AsyncWith | ast.Try) and field == "body"
            for i, statement in enumerate(block):
                if isinstance(statement, ast.For | ast.AsyncFor | ast.While):
                    forever = isinstance(statement, ast.While) and (
                        isinstance(statement.test, ast.Constant) and statement.test.value is True
                    )
                    rest = block[i + 1 :] or ([then] if through and then is not None else [])
                    # a `while` ended by its condition runs its `else` whether or not it came
                    else_fails = _exits(statement) and _then_fails(statement.orelse)
                    if (
                        not forever
                        and not else_fails
                        and _waits(statement)
                        and not _then_fails(rest)
                    ):
                        yield ".".join(scope) or "<module>", statement.lineno
                inner, next_one = scope, block[i + 1] if i + 1 < len(block) else None
                if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    inner, next_one = [*scope, statement.name], None
                elif next_one is None and through:
                    next_one = then
                yield from visit(statement, inner, next_one)
        for case in getattr(node, "cases", []):
            yield from visit(case, scope, None)

    yield from visit(tree, [], None)


def test_every_wait_loop_fails_when_it_runs_out() -> None:
    found: dict[str, list[int]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        for function, line in _loops_falling_through(path):
            found.setdefault(f"{path.relative_to(TESTS)}::{function}", []).append(line)
    # a listed function has its one loop: a second one there is not let through with it
    silent = [
        f"{where} (line {line})"
        for where, lines in found.items()
        for line in (lines[1:] if where in ENDS_EITHER_WAY else lines)
    ]
    assert silent == [], (
        "these wait loops go on as if what they waited for had come when it never did: "
        "give each an `else: raise AssertionError(...)` (or `pytest.fail`), or list it in "
        f"ENDS_EITHER_WAY with why: {silent}"
    )
    stale = sorted(set(ENDS_EITHER_WAY) - set(found))
    assert stale == [], f"listed in ENDS_EITHER_WAY, with no such loop any more: {stale}"


def test_the_check_finds_a_loop_that_falls_through(tmp_path: Path) -> None:
    """The check itself: a loop that runs out silently is found, one that fails is not."""
    source = tmp_path / "waits.py"
    source.write_text(
        "async def silent(done):\n"
        "    for _ in range(10):\n"
        "        if done():\n"
        "            break\n"
        "        await asyncio.sleep(0.1)\n"
        "    go_on()\n"
        "\n"
        "async def fails(done):\n"
        "    for _ in range(10):\n"
        "        if done():\n"
        "            break\n"
        "        await asyncio.sleep(0.1)\n"
        "    else:\n"
        "        raise AssertionError('never came')\n"
        "\n"
        "def conditioned(done):\n"
        "    while not done() and time.monotonic() < deadline:\n"
        "        time.sleep(0.1)\n"
        "    else:\n"
        "        raise AssertionError('runs whether or not it came')\n"
        "\n"
        "async def checked(done):\n"
        "    while time.monotonic() < deadline:\n"
        "        if done():\n"
        "            return\n"
        "        await asyncio.sleep(0.1)\n"
        "    pytest.fail('never came')\n"
        "\n"
        "async def noted(done):\n"
        "    for _ in range(10):\n"
        "        if done():\n"
        "            break\n"
        "        await asyncio.sleep(0.1)\n"
        "    else:\n"
        "        print('never came')\n"
        "    go_on()\n"
    )
    assert list(_loops_falling_through(source)) == [
        ("silent", 2),
        ("conditioned", 17),
        ("noted", 30),
    ]
