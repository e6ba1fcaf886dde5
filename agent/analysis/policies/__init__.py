"""Judging policies by the name users write in `analysis.policy`.

Pure: no I/O. A policy is one module with a class that follows `base.RulePolicy` (start
state, step, verdict; `base.BasePolicy` gives the optional parts) and one `register` line
below; the configuration accepts exactly the registered names. Third-party code registers
the same way, before the configuration is loaded.
"""

from __future__ import annotations

from agent.analysis.policies.base import BasePolicy, PolicyFactory, RulePolicy, Window
from agent.analysis.policies.fixed import FixedPolicy
from agent.analysis.policies.sequential import SequentialPolicy
from agent.analysis.policies.threshold import ThresholdPolicy

_REGISTRY: dict[str, PolicyFactory] = {}


class UnknownPolicy(LookupError):
    """A policy name nobody registered; the message lists the known ones."""


def register(name: str, factory: PolicyFactory) -> None:
    """Make `name` a valid `analysis.policy`, judged by `factory(window)`."""
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
    return factory(window)


register("threshold", ThresholdPolicy)
register("sequential", SequentialPolicy)
register("fixed", FixedPolicy)

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
