"""Performance benchmarks (run by hand or in CI, never as timing assertions in unit tests)."""
