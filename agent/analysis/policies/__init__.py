"""Judging policies by the name users write in `analysis.policy`.

Pure: no I/O. A policy is one module with a class that follows `base.RulePolicy` (start
state, step, verdict; `base.BasePolicy` gives the optional parts) and one `register` line
below; the configuration accepts exactly the registered names. Third-party code registers
the same way, before the configuration is loaded.

The built-ins are registered by where they live and imported when a window is first
compiled: reading a configuration needs their names only, and their statistics (numpy,
scipy) cost a `validate-config`, `check` or `schema` about 0.7 s of CPU for nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.analysis.policies.base import BasePolicy, PolicyFactory, RulePolicy, Window

_REGISTRY: dict[str, PolicyFactory | str] = {}
"""A factory, or the "module:attribute" where a built-in one is (imported on first use)."""


class UnknownPolicy(LookupError):
    """A policy name nobody registered; the message lists the known ones."""


def register(name: str, factory: PolicyFactory | str) -> None:
    """Make `name` a valid `analysis.policy`, judged by `factory(window)`: the factory, or
    "module:attribute" naming it, imported when a window first needs it."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"policy name {name!r}: letters, digits and _ only")
    _REGISTRY[name] = factory


def unregister(name: str) -> None:
    """Forget a registered policy (tests that register their own)."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered policy names, in registration order."""
    return tuple(_REGISTRY)


def compile_policy(window: Window) -> RulePolicy:
    """The window's policy, compiled against its rules and baselines."""
    name = window.policy.name
    factory = _REGISTRY.get(name)
    if factory is None:
        raise UnknownPolicy(f"unknown policy {name!r}; known policies: {', '.join(names())}")
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        factory = _REGISTRY[name] = getattr(importlib.import_module(module), attribute)
    return factory(window)


register("threshold", "agent.analysis.policies.threshold:ThresholdPolicy")
register("sequential", "agent.analysis.policies.sequential:SequentialPolicy")
register("fixed", "agent.analysis.policies.fixed:FixedPolicy")

_BASE_NAMES = ("BasePolicy", "PolicyFactory", "RulePolicy", "Window")


def __getattr__(name: str) -> Any:
    """`base`'s names, from the module that defines them, when first asked for."""
    if name in _BASE_NAMES:
        from agent.analysis.policies import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BasePolicy",
    "PolicyFactory",
    "RulePolicy",
    "UnknownPolicy",
    "Window",
    "compile_policy",
    "names",
    "register",
    "unregister",
]
