"""Entry point for ``python -m maildesk``."""

from maildesk.cli import main

main()
