"""apprise loads only the plugins the channel URLs name (`agent.apprise_plugins`), and takes
every URL it would have taken with all of them loaded. Each side runs in a new Python
process: apprise's plugin manager is one per process, and this worker's has loaded what
earlier tests needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

URLS = [
    "json://127.0.0.1:9/alerts",
    "mailto://127.0.0.1:8025?from=bot@example.com&to=ops@example.com",
    "jsons://127.0.0.1:9/a",
    "form://127.0.0.1:9/a",
    "ntfys://ntfy.example.com/topic",
    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
    "tgram://123456789:abcdefg_hijklmnop/987654321",
    "nonesuch://127.0.0.1/x",  # no plugin: refused both ways
    "no scheme at all",
]
TAKEN = [True] * 7 + [False, False]

LOADED = f"""
import json, apprise
from apprise.manager_plugins import NotificationManager
from agent import apprise_plugins
from agent.alert_channels import unusable_channel
URLS = {URLS!r}
def loaded():
    return sorted({{p.__module__.split(".")[2] for p in NotificationManager().plugins()}})
def took(url):
    return apprise.Apprise.instantiate(url) is not None
"""


def run(code: str) -> Any:
    """`code` in a new interpreter (the agent importable); what it printed, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED + code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_channel_loads_only_its_plugin_and_every_url_is_taken_as_with_all_loaded() -> None:
    said = run(
        """
said = {"reasons": [unusable_channel(u) for u in URLS[:2]], "first": loaded()}
said["added"] = [apprise.Apprise().add(u) for u in URLS[:2]]
said["after"] = loaded()
def load_and_take(urls):
    for url in urls:
        apprise_plugins.load_plugins_for([url])
        yield took(url)
said["took"] = list(load_and_take(URLS[:7]))
said["some"] = len(loaded())
# a scheme whose module the table gets wrong or lacks: every plugin left is loaded
del apprise_plugins.MODULES["mmost"]
apprise_plugins.load_plugins_for(["mmost://127.0.0.1/token"])
said["all"], said["mmost"] = len(loaded()), took("mmost://127.0.0.1/token")
said["took"] += load_and_take(URLS[7:])  # no plugin: refused after the full load
print(json.dumps(said))
"""
    )
    # the channel check (validate-config, a daemon's start) and the notifier's own add
    assert said["reasons"] == [None, None] and said["added"] == [True, True]
    assert said["first"] == said["after"] == ["custom_json", "email"]
    assert said["took"] == TAKEN  # as apprise with everything loaded (next test)
    assert said["some"] < 10 < 100 < said["all"] and said["mmost"]


def test_apprise_with_every_plugin_takes_the_same_urls_and_puts_schemes_where_looked() -> None:
    """Against apprise's own full load: each of its schemes is found where `_modules`
    looks (so no configuration pays the full load), and `MODULES` names no scheme that
    apprise puts elsewhere or lacks."""
    said = run(
        """
took_all = [took(u) for u in URLS]
where = {}
for p in NotificationManager().plugins():
    for s in p.schemas(p):
        where[s] = p.__module__.split(".")[2]
print(json.dumps({"took": took_all, "schemes": len(where),
    "elsewhere": sorted(s for s, m in where.items() if m not in apprise_plugins._modules(s)),
    "stale": sorted(s for s, m in apprise_plugins.MODULES.items() if where.get(s) != m)}))
"""
    )
    assert said["took"] == TAKEN
    assert said["schemes"] > 200 and said["elsewhere"] == [] and said["stale"] == []
