"""`python -m agent` is `postflight`."""

from agent.cli.main import main

raise SystemExit(main())
