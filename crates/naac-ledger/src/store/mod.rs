//! Durable storage of ledger entries and checkpoints (SQLite, PostgreSQL).
