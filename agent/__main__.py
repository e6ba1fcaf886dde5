"""`python -m agent` is `postflight`."""

from agent.cli import main

raise SystemExit(main())
