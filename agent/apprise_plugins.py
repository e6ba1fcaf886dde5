"""Loading only the apprise plugins that the channel URLs name.

apprise 2.x imports every one of its ~190 plugin modules at its first URL lookup (the lazy
load of its `NotificationManager`): a quarter of `postflight validate-config`'s CPU, and as
much again at every daemon start with a channel, where a configuration names one to three
schemes. apprise's `load_modules(path, name)` imports the modules a directory lists (as
`<name>.<module>`), so it is given a directory listing only the modules these schemes need:
apprise's lazy load is then done, and it looks schemes up among those. A scheme whose
module is not found that way (`MODULES`, else the module named as the scheme) has every
module left loaded, as apprise would have: never a URL refused that apprise would take.
Every place that hands apprise a URL calls `load_plugins_for` first.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MODULES = {
    "46elks": "fortysixelks", "elks": "fortysixelks", "apprise": "apprise_api",
    "apprises": "apprise_api", "atalk": "africas_talking", "azure": "office365",
    "o365": "office365", "bsky": "bluesky", "d7sms": "d7networks", "form": "custom_form",
    "forms": "custom_form", "json": "custom_json", "jsons": "custom_json",
    "xml": "custom_xml", "xmls": "custom_xml", "gchat": "google_chat", "gio": "glib",
    "hassio": "home_assistant", "hassios": "home_assistant", "kakao": "kakaotalk",
    "kde": "dbus", "qt": "dbus", "klr": "kaleyra", "kudosity": "burstsms",
    "lfg": "lfgalarm", "mailto": "email", "mailtos": "email", "mmost": "mattermost",
    "mmosts": "mattermost", "mobilemsg": "mobilemessage", "msgbird": "messagebird",
    "ncloud": "nextcloud", "nclouds": "nextcloud", "nctalk": "nextcloudtalk",
    "nctalks": "nextcloudtalk", "nexmo": "vonage", "onesignal": "one_signal",
    "parsep": "parseplatform", "parseps": "parseplatform", "pbul": "pushbullet",
    "pjet": "pushjet", "pjets": "pushjet", "pover": "pushover", "psafer": "pushsafer",
    "psafers": "pushsafer", "push": "techuluspush", "ringc": "ringcentral",
    "rocket": "rocketchat", "rockets": "rocketchat", "schan": "serverchan",
    "session": "sogs", "sessions": "sogs", "signal": "signal_api", "signals": "signal_api",
    "smsmgr": "smsmanager", "spush": "simplepush", "strmlabs": "streamlabs",
    "tgram": "telegram", "toot": "mastodon", "toots": "mastodon", "tweet": "twitter",
    "x": "twitter", "victorops": "splunk", "webex": "webexteams", "wxteams": "webexteams",
    "wecom": "pushplus", "workflow": "workflows", "xbmc": "kodi", "xbmcs": "kodi",
    "zcliq": "cliq", "zohocliq": "cliq",
}  # fmt: skip
"""apprise 2.3's plugin module of each scheme not named as its module (nor as its module
and an `s`, its secure form: `ntfys`); tests/alerting/test_apprise_plugins.py checks it
against apprise's own full load. A scheme missing here costs the full load, never a URL."""

_lock = threading.Lock()


def load_plugins_for(urls: Iterable[str]) -> None:
    """Have apprise know the schemes of `urls`, loading no more of its plugins than they
    need (every one left when a scheme's module is not found)."""
    from apprise.manager_plugins import NotificationManager

    manager = NotificationManager()  # type: ignore[no-untyped-call]
    schemes = {url.partition("://")[0].lower() for url in urls}
    with _lock:
        # `in` before anything is loaded would be apprise's own full load
        missing = {s for s in schemes if s not in manager} if manager else schemes
        if not missing:
            return
        present = {p.name.removesuffix(".py") for p in Path(manager.module_path).iterdir()}
        wanted = {m for s in missing for m in _modules(s)} & present - _loaded(manager)
        if wanted:
            _load(manager, wanted)
        if any(s not in manager for s in missing):  # (a full load by apprise if none was)
            _load(manager, present - _loaded(manager))


def _modules(scheme: str) -> set[str]:
    """Where `scheme`'s plugin may be: `MODULES`, or the module named as it (or as it
    without its secure `s`)."""
    if scheme in MODULES:
        return {MODULES[scheme]}
    return {scheme, scheme.removesuffix("s")}


def _loaded(manager: Any) -> set[str]:
    """The plugin modules apprise has loaded (`apprise.plugins.<module>[.…]`)."""
    return {p.__module__.split(".")[2] for p in manager.plugins()} if manager else set()


def _load(manager: Any, modules: set[str]) -> None:
    """apprise's own loader on a directory that lists only `modules` (empty files named as
    them: it reads the names and imports `apprise.plugins.<name>`)."""
    try:
        with tempfile.TemporaryDirectory(prefix="postflight-apprise-") as listing:
            for name in modules:
                Path(listing, name).touch()
            manager.load_modules(path=listing, name="apprise.plugins", force=True)
    except OSError:  # no temporary directory: all of them, from apprise's own
        manager.load_modules(force=True)
