"""Any order of paths on pytest's command line finds each folder's conftest fixtures
(`tests.one_directory_node`), in a fresh pytest session (pytester) of a small layout
shaped as this suite is: a package of tests whose subpackage's conftest has a fixture of
its own (as tests/e2e's `start_agent`) and overrides one of the package's (as tests/api's
and tests/store's `store`)."""

from __future__ import annotations

import pytest

SESSION = [
    *("-p", "tests.one_directory_node", "-p", "no:cacheprovider"),
    # as pyproject's addopts (which a pytester session does not read)
    *("-p", "no:schemathesis", "-p", "no:anyio", "-p", "no:xdist"),
    *("-o", "asyncio_default_fixture_loop_scope=function"),
]


FIXTURE = "import pytest\n\n@pytest.fixture\ndef {name}():\n    return {value!r}\n"
SUB_TEST = "def test_a(store, start_agent):\n    assert (store, start_agent) == ('sub', 'agent')\n"


@pytest.fixture
def layout(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(
        **{
            "suite/__init__.py": "",
            "suite/conftest.py": FIXTURE.format(name="store", value="top"),
            "suite/test_top.py": "def test_top(store):\n    assert store == 'top'\n",
            "suite/sub/__init__.py": "",
            "suite/sub/conftest.py": FIXTURE.format(name="store", value="sub")
            + FIXTURE.format(name="start_agent", value="agent"),
            "suite/sub/test_a.py": SUB_TEST,
            "suite/sub/test_b.py": "def test_b(store):\n    assert store == 'sub'\n",
        }
    )
    return pytester


A, B, TOP = "suite/sub/test_a.py", "suite/sub/test_b.py", "suite/test_top.py"


@pytest.mark.parametrize(
    ("order", "tests"),
    [
        # a file of the package between two of its subpackage's: the last one got the
        # package's `store` (B), or erred "fixture 'start_agent' not found" (A) (pytest 9.1)
        ([A, TOP, B], 3),
        ([B, TOP, A, TOP], 3),  # the file given twice is run once
        (["suite/sub", TOP, B], 3),
        ([TOP, A, B], 3),
        ([A, B, TOP], 3),
        (["suite"], 3),
    ],
)
def test_every_order_of_paths_finds_each_folders_fixtures(
    layout: pytest.Pytester, order: list[str], tests: int
) -> None:
    layout.runpytest(*SESSION, *order).assert_outcomes(passed=tests)
