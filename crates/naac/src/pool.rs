//! The embedded pool: provider processes on 127.0.0.1 started by `naac run` (and `naac bench`)
//! when no `--join` is given, so a newcomer gets results with no set-up.

use anyhow::Context as _;
use naac_net::Multiaddr;
use std::process::Stdio;
use tokio::process::{Child, Command};

/// Provider child processes; they stop when this is dropped (their stdin closes, and they
/// are killed if still there).
pub struct Pool {
    children: Vec<Child>,
}

impl Pool {
    /// Starts `workers` providers of `slots` slots each that dial `requester`.
    pub fn start(
        workers: u32,
        slots: u32,
        requester: &Multiaddr,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("find the naac executable")?;
        let mut children = Vec::new();
        for _ in 0..workers {
            let child = Command::new(&exe)
                .arg("node")
                .arg("--provide")
                .args(["--slots", &slots.to_string()])
                .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
                .args(["--join", &requester.to_string()])
                .args(["--no-mdns", "--ephemeral", "--exit-with-parent"])
                .args(extra)
                // Quiet unless the user asked for logs.
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("start provider process {}", exe.display()))?;
            children.push(child);
        }
        Ok(Self { children })
    }

    /// Process ids, for tests and benchmarks that kill one.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|c| c.id()).collect()
    }

    /// Stops every provider and waits for them to exit.
    pub async fn stop(mut self) {
        for c in &mut self.children {
            drop(c.stdin.take());
        }
        for c in &mut self.children {
            if tokio::time::timeout(std::time::Duration::from_secs(2), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
    }
}
