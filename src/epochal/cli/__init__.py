"""The `epochal` command: train, report, compare, list runs and tune, without writing Python."""
