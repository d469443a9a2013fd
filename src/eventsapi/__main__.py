"""Allows `python -m eventsapi`."""

from eventsapi.cli import main

raise SystemExit(main())
