"""The `hornet` subcommands: each one's arguments and presentation (hornet.cli dispatches by name)."""
