"""The contract's reference configuration (contract §6), for the tests that run it or
take keys from it: the shared spec's file where the checkout sits beside it, else this
checkout's copy (which differs only in its `${VAR:-default}`s' defaults and two keys it
documents: tests/config/test_validate_config.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SPEC = Path("/work/shared/spec/postflight.example.yaml")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = SPEC if SPEC.exists() else ROOT / "config" / "postflight.example.yaml"


def example_check(environment: str, name: str) -> dict[str, Any]:
    """The check `name` of the example's `environment`, as written."""
    environments = yaml.safe_load(EXAMPLE.read_text())["environments"]
    check: dict[str, Any] = next(
        c for c in environments[environment]["checks"] if c["name"] == name
    )
    return check
