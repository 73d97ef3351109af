"""``python -m deerflow`` runs the command line."""

from deerflow.cli import main

main()
