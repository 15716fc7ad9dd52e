"""``python -m highlighter`` runs the command-line interface."""

from highlighter.cli import main

raise SystemExit(main())
