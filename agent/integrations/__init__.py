"""GitHub and Vercel: inbound deploy events, rollback targets, statuses and gates (contract §7)."""
