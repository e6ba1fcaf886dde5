"""The judge: rules, baselines and rounds in, verdicts out.

Pure: no I/O, no clock, no asyncio. Everything it needs arrives as arguments,
so a decision can be replayed exactly (tests, the decision benchmark, a restart).
"""
