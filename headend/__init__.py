"""The head-end: vending, command queue, ingest and the operator interface (and the ``amr`` CLI)."""
