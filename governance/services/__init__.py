"""Use cases: plain arguments in, rows out; they flush, never commit, and record audit events."""
