"""`postflight`, the command line: `main` is the console script's entry point.

`main.py` parses and dispatches; `commands.py` runs `register` and `status`.
"""

from agent.cli.main import main

__all__ = ["main"]
