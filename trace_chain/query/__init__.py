"""The query engine: one SQL view of hot and cold chain data in a sandboxed DuckDB (the gate,
the hardened connection, the unified relations, execution with limits)."""
