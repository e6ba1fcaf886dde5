"""Every configuration model shares one strict base and one non-empty-secret check
(agent/config_models.py), so settings, providers and integrations refuse the same way."""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from agent import settings
from agent.config_models import StrictModel, non_empty_secret
from agent.integrations import config as integrations_config
from agent.integrations.config import GithubIntegration
from agent.providers import provider_settings
from agent.providers.provider_settings import SentrySettings


@pytest.mark.parametrize("module", [settings, provider_settings, integrations_config])
def test_each_config_module_builds_on_the_one_strict_base(module: object) -> None:
    own = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, BaseModel)
        and value.__module__ == module.__name__  # type: ignore[attr-defined]
    ]
    assert own
    # The one base is the only strict root: no module defines its own copy.
    roots = [
        model
        for model in own
        if StrictModel not in model.__mro__ and model.model_config.get("extra") == "forbid"
    ]
    assert roots == [settings.Settings] if module is settings else roots == []


def test_blank_secrets_are_refused_the_same_way_everywhere() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        non_empty_secret(SecretStr("  "))
    with pytest.raises(ValidationError, match="must not be empty"):
        GithubIntegration(token=SecretStr(" "))
    with pytest.raises(ValidationError, match="must not be empty"):
        SentrySettings.model_validate({"token": " ", "org": "acme"})
