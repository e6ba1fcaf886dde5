"""`postflight`, the command line: `main` is the console script's entry point.

`main.py` parses and dispatches; `commands.py` runs `register` and `status`,
`config_commands.py` the commands that read a configuration file.
"""

from agent.cli.main import main

__all__ = ["main"]
