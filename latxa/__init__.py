"""The `latxa` command line: a thin front over every layer."""
