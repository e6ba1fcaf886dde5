"""Building blocks that `agent`, `checks` and `alerting` share: durations, the sample,
redaction, time and JSON helpers. Imports none of those packages, so each may use it."""
