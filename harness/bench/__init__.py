"""The benchmark suite's sections (``scripts/bench.py`` runs them and writes the report)."""
