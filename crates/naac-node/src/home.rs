//! The data dir (`$NAAC_HOME`, default `~/.local/share/naac`) and what lives in it.

use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// Paths inside one data dir.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$NAAC_HOME`, else `$XDG_DATA_HOME/naac`, else `~/.local/share/naac`.
    pub fn from_env() -> anyhow::Result<Self> {
        if let Some(h) = std::env::var_os("NAAC_HOME").filter(|h| !h.is_empty()) {
            return Ok(Self::at(PathBuf::from(h)));
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|h| !h.is_empty()) {
            return Ok(Self::at(PathBuf::from(x).join("naac")));
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .context("neither NAAC_HOME nor HOME is set; set NAAC_HOME to a writable directory")?;
        Ok(Self::at(PathBuf::from(home).join(".local/share/naac")))
    }

    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The node's ed25519 key (mode 0600).
    pub fn identity(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    /// Compiled modules, keyed by module hash and engine settings.
    pub fn module_cache(&self) -> PathBuf {
        self.root.join("cache/modules")
    }

    /// The requester's record of every provider it has used (SQLite).
    pub fn reputation_db(&self) -> PathBuf {
        self.root.join("reputation.db")
    }

    /// The owner's usage policy (TOML; missing means the documented defaults).
    pub fn policy(&self) -> PathBuf {
        self.root.join("policy.toml")
    }

    /// The device manager's cached probe results (compute score, keyed by hardware).
    pub fn device_cache(&self) -> PathBuf {
        self.root.join("device.json")
    }

    /// When this node was up, for the availability figure.
    pub fn uptime(&self) -> PathBuf {
        self.root.join("uptime.json")
    }

    /// Present while the owner has paused the node by hand (`naac pause`); may hold an
    /// RFC 3339 time until which the pause lasts.
    pub fn pause_file(&self) -> PathBuf {
        self.root.join("paused")
    }

    /// The user's key: requesters attest their per-run identity with it, so providers'
    /// allow and deny lists name people, not runs.
    /// The revoked tokens this node knows of.
    pub fn revoked(&self) -> PathBuf {
        self.root.join("revoked.jsonl")
    }

    pub fn user_identity(&self) -> PathBuf {
        self.root.join("user.key")
    }

    /// A bank's key (`bank/identity.key`): its account key, apart from the node key so
    /// the same data dir can run a node and an embedded bank.
    pub fn bank_identity(&self) -> PathBuf {
        self.root.join("bank").join("identity.key")
    }

    /// A bank's default ledger (`bank/ledger.db`, SQLite); the embedded pool's bank too.
    pub fn bank_ledger(&self) -> PathBuf {
        self.root.join("bank").join("ledger.db")
    }

    /// Scratch space for running tasks.
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    /// A storage host's shards (`store/`; the owner's `storage_dir` moves them).
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// What this data dir's user put in the store, where it lives and how its audits went
    /// (`store.db`, SQLite).
    pub fn store_db(&self) -> PathBuf {
        self.root.join("store.db")
    }

    /// Shards being made for an upload or a repair (`store-outgoing/`).
    pub fn store_outgoing(&self) -> PathBuf {
        self.root.join("store-outgoing")
    }

    /// Creates the data dir if needed.
    pub fn ensure(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("create data dir {}", self.root.display()))
    }
}
