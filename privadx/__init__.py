"""The ``privadx`` command line: one entry point, one lazily imported module per subcommand."""
