"""`python -m hippograph ...` is the `hippograph` command (one CLI for every entry point)."""

from hippograph.cli import main

main()
