"""The GitHub Action's step (`action.yml`): register the deploy, wait for the verdict,
report it where the workflow looks, and fail the job unless it passed.

Runs `postflight register --wait --json` as a child process (exactly what a user
would run by hand), then writes the verdict table to `$GITHUB_STEP_SUMMARY` and the
outputs `deploy-id`, `state`, `url` to `$GITHUB_OUTPUT`. Inputs come from the
environment the action sets (`POSTFLIGHT_*`) and GitHub's own variables. It must not
talk to the agent itself: the CLI does.

    python -m agent.github_action          # with the variables below set
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from typing import Any

from common.units import bounds_in_units, format_value

INPUTS = {
    "url": "POSTFLIGHT_URL",
    "token": "POSTFLIGHT_TOKEN",
    "environment": "POSTFLIGHT_ENVIRONMENT",
    "version": "POSTFLIGHT_VERSION",
    "previous-version": "POSTFLIGHT_PREVIOUS_VERSION",
    "timeout": "POSTFLIGHT_TIMEOUT",
    "labels": "POSTFLIGHT_LABELS",
}
"""Action input → the variable `action.yml` passes it in (a test keeps them in step)."""
OUTPUTS = ("deploy-id", "state", "url")
ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "⚪"}


def _labels(text: str) -> list[str]:
    """`labels` input: `k=v` pairs, one per line or comma-separated."""
    pairs = [p.strip() for line in text.splitlines() for p in line.split(",")]
    return [p for p in pairs if p]


def register_command(env: Mapping[str, str]) -> list[str]:
    """The `postflight register` command line for these inputs."""
    get = env.get
    version = get(INPUTS["version"]) or get("GITHUB_SHA") or ""
    command = [
        sys.executable,
        "-m",
        "agent",
        "register",
        "--env",
        get(INPUTS["environment"], ""),
        "--version",
        version,
        "--wait",
        "--json",
        "--timeout",
        get(INPUTS["timeout"]) or "30m",
    ]
    if get("GITHUB_SHA"):
        command += ["--commit", env["GITHUB_SHA"]]
    if get(INPUTS["previous-version"]):
        command += ["--previous", env[INPUTS["previous-version"]]]
    labels = _labels(get(INPUTS["labels"], ""))
    if get("GITHUB_RUN_ID") and get("GITHUB_REPOSITORY"):
        server = get("GITHUB_SERVER_URL", "https://github.com")
        run = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        if not any(label.startswith("github.run=") for label in labels):
            labels.append(f"github.run={run}")
    for label in labels:
        command += ["--label", label]
    # a re-run of this step in the same attempt re-attaches to the same window
    run_key = "-".join(
        env.get(k, "") for k in ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_JOB")
    )
    key = f"gha-{run_key}-{get(INPUTS['environment'], '')}" if run_key.strip("-") else None
    command += ["--idempotency-key", key or f"gha-{uuid.uuid4()}"]
    return command


def summary_markdown(deploy: Mapping[str, Any], url: str) -> str:
    """The verdict as a step summary: headline, then one row per rule."""
    verdict = deploy.get("verdict") or {}
    lines = [
        f"### Postflight: {deploy.get('environment')} {deploy.get('version')} —"
        f" **{deploy.get('state')}**",
        "",
        f"{verdict.get('reason') or 'no verdict'} ([deploy page]({url}))",
        "",
        "| rule | outcome | observed | baseline | threshold | detail |",
        "|---|---|---|---|---|---|",
    ]
    rules = verdict.get("rules") or (deploy.get("progress") or {}).get("rules") or []
    for rule in rules:
        outcome = str(rule.get("outcome", ""))
        metric = rule.get("metric")
        threshold = rule.get("threshold")
        cells = [
            str(rule.get("name", "")),
            f"{ICONS.get(outcome, '')} {outcome}".strip(),
            # in the metric's unit, as alerts, the page and `status` write them: the table's
            # `0` and `0.0187` sat beside their `0%` and `1.87%`
            _cell(format_value(metric if isinstance(metric, str) else None, rule.get("observed"))),
            _cell(format_value(metric if isinstance(metric, str) else None, rule.get("baseline"))),
            _cell(None if threshold is None else bounds_in_units(metric, threshold)),
            _cell(rule.get("detail")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    rollback = deploy.get("rollback")
    if rollback:
        lines += [
            "",
            f"Rollback: {rollback.get('state')} after {rollback.get('attempts')} attempt(s).",
        ]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _append(path: str | None, text: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text)


def main(env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    missing = [name for name in ("url", "token", "environment") if not env.get(INPUTS[name])]
    if missing:
        print(f"::error::postflight: the inputs {', '.join(missing)} are required", flush=True)
        return 2
    process = subprocess.run(
        register_command(env), env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    try:
        deploy = json.loads(process.stdout)
    except ValueError:
        print(f"::error::postflight register failed (exit {process.returncode})", flush=True)
        return process.returncode or 2
    deploy_url = f"{env[INPUTS['url']].rstrip('/')}/v1/deploys/{deploy.get('id')}"
    outputs = {
        "deploy-id": deploy.get("id", ""),
        "state": deploy.get("state", ""),
        "url": deploy_url,
    }
    _append(env.get("GITHUB_OUTPUT"), "".join(f"{k}={v}\n" for k, v in outputs.items()))
    # people read the summary in GitHub: it links the deploy page (its sign-in form asks
    # for a token; a view token would be readable by anyone who can read the job)
    page_url = f"{env[INPUTS['url']].rstrip('/')}/deploys/{deploy.get('id')}"
    _append(env.get("GITHUB_STEP_SUMMARY"), summary_markdown(deploy, page_url))
    state = deploy.get("state")
    if state == "passed":
        print(f"postflight: {deploy.get('environment')} {deploy.get('version')} passed", flush=True)
        return 0
    reason = (deploy.get("verdict") or {}).get("reason") or "no verdict"
    print(f"::error::postflight: {state}: {reason}", flush=True)
    return process.returncode or 1


if __name__ == "__main__":
    raise SystemExit(main())
