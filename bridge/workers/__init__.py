"""Background workers: rows in PostgreSQL, claimed with SKIP LOCKED, so processes share them."""
