"""Alerting: what to tell on-call (`events`), how it reads (`templates`) and sending
it through apprise to the channels an environment's tags pick (`notifier`)."""

from alerting.events import NOTIFY_TYPES, Alert, AlertEvent, breach_key, provider_key, resolved_key
from alerting.notifier import ChannelResult, Notifier, NotifyOutcome, channel_url_errors

__all__ = [
    "NOTIFY_TYPES",
    "Alert",
    "AlertEvent",
    "ChannelResult",
    "Notifier",
    "NotifyOutcome",
    "breach_key",
    "channel_url_errors",
    "provider_key",
    "resolved_key",
]
