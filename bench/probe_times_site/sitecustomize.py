"""`bench/probe_times.install` in the agent's process, where `bench/footprint.py
--probe-times` put this directory on its PYTHONPATH (nothing without the variable)."""

import os

if os.environ.get("POSTFLIGHT_PROBE_TIMES"):
    from bench.probe_times import ENV, install

    install(os.environ[ENV])
