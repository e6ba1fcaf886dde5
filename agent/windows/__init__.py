"""Deploy windows, from claim to verdict: `supervisor` claims and runs them, `lifecycle`
watches one, `probing` runs its checks, `alert_once` pages once, `evidence` records."""
