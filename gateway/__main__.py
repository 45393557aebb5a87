"""`python -m gateway` is the `pcs-gateway` command."""

from gateway.cli import main

raise SystemExit(main())
