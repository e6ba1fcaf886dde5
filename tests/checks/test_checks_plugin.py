"""A third-party check package is found through its `postflight.checks` entry point, not by path.

The package lives in tests/plugin_pkg and must be installed (`pip install
./tests/plugin_pkg`, as .ci/run does). Without it these tests skip, unless
POSTFLIGHT_REQUIRE_ALL=1, where a missing plugin is a failure.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path

import pytest
from pydantic import TypeAdapter
from yarl import URL

from checks.base import CheckConfig
from checks.registry import build_check, check_types, config_models, run_check
from tests.checks.check_target import MakeContext, check_config_union, free_port

PLUGIN_DIST = "postflight-tcp-check"
PLUGIN_SOURCE = Path(__file__).resolve().parents[1] / "plugin_pkg"


@pytest.fixture(autouse=True)
def plugin_installed() -> None:
    try:
        distribution(PLUGIN_DIST)
    except PackageNotFoundError:
        reason = f"plugin {PLUGIN_DIST} is not installed: pip install {PLUGIN_SOURCE}"
        if os.environ.get("POSTFLIGHT_REQUIRE_ALL") == "1":
            pytest.fail(f"POSTFLIGHT_REQUIRE_ALL=1 and {reason}")
        pytest.skip(reason)


def test_plugin_is_discovered_through_its_entry_point() -> None:
    (ep,) = [e for e in entry_points(group="postflight.checks") if e.name == "tcp"]
    assert ep.dist is not None and ep.dist.name == PLUGIN_DIST
    cls = check_types()["tcp"]
    assert cls.__module__ == "postflight_tcp_check"
    # Imported from where pip put it, not from the source tree next to these tests.
    module_file = Path(sys.modules[cls.__module__].__file__ or "")
    assert PLUGIN_SOURCE not in module_file.parents
    assert str(PLUGIN_SOURCE) not in sys.path
    assert cls.Config in config_models()


def test_plugin_config_joins_the_discriminated_union() -> None:
    adapter: TypeAdapter[CheckConfig] = TypeAdapter(check_config_union())
    config = adapter.validate_python({"name": "db-port", "type": "tcp", "port": 5432})
    assert type(config).__name__ == "TcpCheckConfig"
    assert type(build_check(config)) is check_types()["tcp"]


async def test_plugin_check_runs_against_a_real_target(make_ctx: MakeContext, target: URL) -> None:
    check = build_check(check_types()["tcp"].Config.model_validate({"name": "port", "type": "tcp"}))
    up = await run_check(check, make_ctx(target))
    assert up.ok, up.message
    assert up.samples[0].latency_s is not None and up.duration_s > 0
    down = await run_check(check, make_ctx(f"http://127.0.0.1:{free_port()}"))
    assert not down.ok and down.samples[0].error == "connect" and down.result == "fail"
