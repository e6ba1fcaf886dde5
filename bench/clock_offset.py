"""Run `python -m agent …` with its wall clock (`time.time`) stepped by the seconds in
the file `$POSTFLIGHT_CLOCK_OFFSET_FILE` (re-read every 50 ms): an NTP step, or a
replica whose clock is off, simulated without faketime (not on this machine) and
without touching the machine's clock. The monotonic clock is left alone, as a step
leaves it. Used by `bench/ha_faults.py`'s `clock_step` fault.

    POSTFLIGHT_CLOCK_OFFSET_FILE=r0.offset python bench/clock_offset.py run --config r0.yaml
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time

_real = time.time
_offset = 0.0


def _follow(path: str) -> None:
    global _offset
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                _offset = float(f.read().strip() or 0.0)
        except (OSError, ValueError):
            pass
        time.sleep(0.05)


def _stepped() -> float:
    return _real() + _offset


if __name__ == "__main__":
    path = os.environ.get("POSTFLIGHT_CLOCK_OFFSET_FILE")
    if path:
        threading.Thread(target=_follow, args=(path,), daemon=True).start()
        time.time = _stepped
    sys.argv = ["postflight", *sys.argv[1:]]
    runpy.run_module("agent", run_name="__main__", alter_sys=True)
