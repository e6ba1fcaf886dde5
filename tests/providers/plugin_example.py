"""A third-party provider as a plugin author would write it (for the registry tests)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from agent.analysis.types import Observation, Rule
from agent.metrics import Metrics
from agent.providers.base import DeployScope, Period
from agent.providers.registry import Redact


class EchoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float

    @classmethod
    def check_rule(cls, rule: Rule, baseline: object) -> None:
        """The shared hook: the settings call it for every rule with `source: echo`."""
        if rule.metric != "echo_value":
            raise ValueError(f"metric must be echo_value for source echo (got {rule.metric!r})")


class EchoProvider:
    """Answers every rule with its configured value."""

    name = "echo"
    config_model: ClassVar[type[BaseModel]] = EchoSettings

    def __init__(
        self, config: EchoSettings, *, metrics: Metrics, redact: Redact | None = None
    ) -> None:
        self.config = config

    async def fetch(
        self, rule: Rule, scope: DeployScope, period: Period, release: str | None
    ) -> Observation:
        return Observation(value=self.config.value, query="echo")

    async def mark(self, scope: DeployScope, event: Literal["deploy", "rollback"]) -> None:
        return None

    def link(
        self, rule: Rule, scope: DeployScope, period: Period, *, release: str | None = None
    ) -> str | None:
        return None

    async def aclose(self) -> None:
        return None
