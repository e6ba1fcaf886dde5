"""The GitHub Action's script, run as GitHub runs it (its variables set, a real daemon):
it fails the job unless the verdict passed, writes the step summary and the outputs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import yaml

from agent.github_action import INPUTS, OUTPUTS, register_command
from tests.e2e.conftest import TOKEN, AgentFactory, FlipTarget, environment

ROOT = Path(__file__).resolve().parents[2]


def github_env(tmp_path: Path, url: str, **inputs: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTFLIGHT", "GITHUB_"))}
    env.update(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_SHA": "9fceb02d0ae598e95dc970b74767f19372d61af8",
            "GITHUB_REPOSITORY": "acme/web",
            "GITHUB_RUN_ID": "1234",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_JOB": "gate",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_OUTPUT": str(tmp_path / "output"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "PYTHONPATH": str(ROOT),
            INPUTS["url"]: url,
            INPUTS["token"]: TOKEN,
            INPUTS["environment"]: "production",
            INPUTS["labels"]: "pipeline=run-1234\nteam=web",
        }
    )
    env.update({INPUTS[k]: v for k, v in inputs.items()})
    return env


async def run_action(env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.github_action",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def outputs(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "output").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


async def test_a_passing_deploy_passes_the_step_and_reports_it(
    start_agent: AgentFactory, flip_target: FlipTarget, tmp_path: Path
) -> None:
    agent = await start_agent(environment("production", flip_target.url))
    code, log = await run_action(github_env(tmp_path, agent.url))
    assert code == 0, log
    out = outputs(tmp_path)
    assert set(out) == set(OUTPUTS)
    assert out["state"] == "passed"
    assert out["url"] == f"{agent.url}/v1/deploys/{out['deploy-id']}"
    deploy = await agent.get(out["deploy-id"])
    assert deploy["version"] == "9fceb02d0ae598e95dc970b74767f19372d61af8"  # default: the sha
    assert deploy["labels"]["pipeline"] == "run-1234"
    assert deploy["labels"]["github.run"] == "https://github.com/acme/web/actions/runs/1234"
    summary = (tmp_path / "summary.md").read_text()
    assert "**passed**" in summary and "| probe-errors | ✅ pass |" in summary
    # the summary is read by people in GitHub's UI: its link opens the deploy page (its
    # sign-in form, no view token in the job's log), not the API's JSON, a 401 in a tab
    assert f"([deploy page]({agent.url}/deploys/{out['deploy-id']}))" in summary


async def test_a_failing_deploy_fails_the_step(
    start_agent: AgentFactory, flip_target: FlipTarget, tmp_path: Path
) -> None:
    agent = await start_agent(environment("production", flip_target.url))
    flip_target.bad = True
    code, log = await run_action(github_env(tmp_path, agent.url, version="v-bad"))
    assert code == 1, log
    assert "::error::postflight: failed" in log
    assert outputs(tmp_path)["state"] == "failed"
    assert "| probe-errors | ❌ fail |" in (tmp_path / "summary.md").read_text()


async def test_missing_inputs_and_an_unreachable_agent_fail_the_step(tmp_path: Path) -> None:
    env = github_env(tmp_path, "http://127.0.0.1:9")
    code, log = await run_action({**env, INPUTS["environment"]: ""})
    assert code == 2 and "environment" in log
    code, log = await run_action(env)
    assert code == 2, log


def test_action_yml_passes_every_input_the_script_reads() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert set(INPUTS) <= set(action["inputs"])
    assert set(OUTPUTS) == set(action["outputs"])
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "postflight")
    for name, variable in INPUTS.items():
        assert step["env"][variable] == f"${{{{ inputs.{name} }}}}"
    assert step["run"] == "python -m agent.github_action"
    assert action["inputs"]["version"]["default"] == "${{ github.sha }}"


def test_the_readmes_deploy_workflow_gives_the_action_the_inputs_it_declares() -> None:
    """The README's `.github/workflows/deploy.yml`, copied by a new user: it is YAML (it
    was not: `{run: npx vercel build --token "${{ … }}"}`, a `{` in a flow mapping's plain
    value, and `run: echo "Postflight ${{ … }}: ${{ … }}"`, a `: ` in a plain value, which
    GitHub refuses as an invalid workflow file); each step using the Action passes every
    input `action.yml` requires and none it does not declare (GitHub warns of an unexpected
    input and runs on without it), and a later step reads only outputs it declares (an
    undeclared one reads empty)."""
    import re

    action = yaml.safe_load((ROOT / "action.yml").read_text())
    required = {name for name, spec in action["inputs"].items() if spec.get("required")}
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    [workflow] = [yaml.safe_load(b) for b in blocks if b.startswith("# .github/workflows/deploy")]
    gates = {}
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if str(step.get("uses", "")).endswith("/postflight@v1"):
                given = set(step.get("with") or {})
                assert required <= given <= set(action["inputs"]), given
                gates[step.get("id")] = step
    assert len(gates) == 2, gates  # staging's gate and production's
    read = re.findall(r"steps\.(\w+)\.outputs\.([\w-]+)", readme.split("deploy.yml", 1)[1])
    assert read, "the README's workflow reads the gate's outputs"
    for step_id, output in read:
        if step_id in gates:
            assert output in action["outputs"], output


def test_the_command_line_is_what_a_user_would_type() -> None:
    command = register_command(
        {INPUTS["environment"]: "staging", "GITHUB_SHA": "abc", INPUTS["labels"]: "a=1, b=2"}
    )
    assert command[1:][:3] == ["-m", "agent", "register"]
    assert command[command.index("--version") + 1] == "abc"
    assert "--wait" in command and "--json" in command
    assert [command[i + 1] for i, c in enumerate(command) if c == "--label"] == ["a=1", "b=2"]
