"""The suite's bytecode written once, before the xdist workers start (a pytest plugin, see
tests/conftest.py).

In a fresh clone (CI's, `.ci/run`) nothing is compiled yet, and each of the five workers
compiled every module it imported and rewrote the asserts of every test module again as
it collected: a collection took 12.7 s of CPU a worker so, 3.7 s with the caches (the
whole suite's, `--collect-only -n 0`), and the five ran at once on two cores before any
test. Now the controller writes them once (pytest's own assert-rewritten `.pyc` of each
test module and conftest, and the agent's packages' plain bytecode), and every worker,
daemon and CLI the suite starts reads them. A run whose caches are warm skips the files
it already has (pytest's and Python's own checks of each `.pyc` against its source)."""

from __future__ import annotations

import compileall
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "checks", "alerting", "common")
"""The project's own packages, whose bytecode every worker and started process reads."""


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which starts the workers
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput") or not config.pluginmanager.has_plugin("dsession"):
        return  # a worker, or a run without workers: it compiles what it imports itself
    if sys.dont_write_bytecode:
        return
    for package in PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=1)
    _rewrite_test_modules(config)


def _rewrite_test_modules(config: pytest.Config) -> None:
    """Each test module's and conftest's assert-rewritten bytecode, as pytest's import hook
    writes it (`AssertionRewritingHook.exec_module`) without running the module; one it
    already has, or cannot write, is left. A pytest whose internals moved writes none:
    the workers write their own, as before."""
    try:
        from _pytest.assertion.rewrite import (
            PYC_TAIL,
            _read_pyc,
            _rewrite_test,
            _write_pyc,
            assertstate_key,
            get_cache_dir,
            try_makedirs,
        )

        state = config.stash[assertstate_key]
    except (ImportError, KeyError):
        return
    tests = ROOT / "tests"
    for source in sorted([*tests.rglob("test_*.py"), *tests.rglob("conftest.py")]):
        cache = get_cache_dir(source)
        pyc = cache / (source.name[:-3] + PYC_TAIL)
        if not try_makedirs(cache) or _read_pyc(source, pyc, state.trace) is not None:
            continue
        try:
            stat, code = _rewrite_test(source, config)
        except SyntaxError:
            continue  # said by the worker that collects it
        _write_pyc(state, code, stat, pyc)
