"""The monitoring examples in config/: valid for Prometheus, and naming only metrics
the agent really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agent.metrics import Metrics

CONFIG = Path(__file__).resolve().parents[2] / "config"
NAME = re.compile(r"\bpostflight_[a-z_]+")


def exported_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update({f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_info"})
    return names


def expressions() -> list[str]:
    dashboard = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((CONFIG / "postflight-alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs


def test_dashboard_and_alert_rules_name_only_exported_metrics() -> None:
    used = {name for expr in expressions() for name in NAME.findall(expr)}
    assert used, "no Postflight metric is used"
    assert used <= exported_names(), used - exported_names()


@pytest.mark.parametrize(
    ("args", "path"),
    [(["check", "rules"], "postflight-alerts.yml"), (["check", "config"], "prometheus-scrape.yml")],
)
def test_promtool_accepts_the_examples(args: list[str], path: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found: install the Debian package `prometheus`")
    proc = subprocess.run(
        [promtool, *args, path], cwd=CONFIG, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_alert_rules_fire_when_they_should() -> None:
    """`promtool test rules` on series as the agent exports them: a wrong webhook secret
    (every delivery rejected, none opened) alerts, one junk request beside signed ones
    does not; the first failed rollback after a start pages; a store that stopped answering
    a running agent pages after 2 minutes, not during the wait at start."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found: install the Debian package `prometheus`")
    tests = Path(__file__).with_name("alert_rules_test.yml")
    proc = subprocess.run(
        [promtool, "test", "rules", tests.name],
        cwd=tests.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_undelivered_rollback_alert_names_every_rollback_target() -> None:
    """A rollback goes to the environment's webhook, to Vercel or to a GitHub workflow
    dispatch, each counted in `postflight_rollbacks_total`; the shipped alert said "The
    pipeline's rollback webhook refused or never answered", and an on-call whose
    environments roll back through Vercel looked for a webhook they do not have."""
    rules = yaml.safe_load((CONFIG / "postflight-alerts.yml").read_text())
    (rule,) = [
        r
        for g in rules["groups"]
        for r in g["rules"]
        if r.get("alert") == "PostflightRollbackNotDelivered"
    ]
    said = rule["annotations"]["description"]
    for target in ("webhook", "Vercel", "GitHub"):
        assert target in said, said
