//! The owner's usage policy (`policy.toml` in the data dir). Being written.
