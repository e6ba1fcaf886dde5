"""The README's rollback workflow (`rollback.target: github`) takes the dispatch Postflight
sends, through the real daemon: GitHub refuses a dispatch carrying an input the workflow
does not declare (422), so a workflow written from the README must declare all five, and
its `run-name` must carry the deploy id for a restart to find the run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    fake_github,
    fake_vercel,
    integrations,
    start_agent,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

README = Path(__file__).resolve().parents[2] / "README.md"
ROLLBACK = "{target: github, github: {workflow: rollback.yml, ref: main}, backoff: 50ms}"


def readme_workflow() -> dict[str | bool, Any]:
    """The README's `.github/workflows/rollback.yml`."""
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if b.startswith("# .github/workflows/rollback.yml")]
    assert len(found) == 1, "the README shows one rollback workflow"
    document: dict[str | bool, Any] = yaml.safe_load(found[0])  # `on` read as True: below
    return document


def dispatch_inputs(workflow: dict[str | bool, Any]) -> dict[str, bool]:
    # YAML 1.1 reads the key `on` as True
    trigger = workflow["on"] if "on" in workflow else workflow[True]
    inputs = trigger["workflow_dispatch"]["inputs"]
    return {name: bool(spec.get("required", False)) for name, spec in inputs.items()}


@pytest.mark.parametrize("declared", ["as-the-readme", "one-input-missing"])
async def test_the_readme_rollback_workflow_takes_postflights_dispatch(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    declared: str,
) -> None:
    workflow = readme_workflow()
    inputs = dispatch_inputs(workflow)
    if declared == "one-input-missing":
        inputs.pop("previous_version")
    fake_github.declared_inputs = inputs
    fake_github.run_name = re.sub(r"\$\{\{\s*inputs\.(\w+)\s*\}\}", r"{\1}", workflow["run-name"])
    agent = await start_agent(
        environments(flip_target, rollback=ROLLBACK), extra=integrations(fake_github, fake_vercel)
    )
    # an environment's first deploy: previous_version is sent as ""
    deploy = await agent.register("production", "v5")
    flip_target.bad = True
    final = await agent.settled(deploy["id"])
    if declared == "one-input-missing":
        assert final["rollback"]["state"] == "failed", final
        assert "Unexpected inputs provided" in final["rollback"]["last_error"]
        return
    assert (final["state"], final["rollback"]["state"]) == ("rolled_back", "delivered"), final
    assert [d["inputs"]["deploy_id"] for d in fake_github.dispatches] == [deploy["id"]]
    assert deploy["id"] in fake_github.runs[0]["display_title"]
