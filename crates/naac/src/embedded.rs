//! The embedded pool: provider processes on 127.0.0.1 started by `naac run` (and `naac bench`)
//! when no `--join` is given, so a newcomer gets results with no set-up.
//!
//! Like a Ray raylet, the pool supervises its workers: one that dies (crash, OOM killer,
//! `kill -9`) is restarted, up to [`MAX_RESTARTS`] times, and rejoins the requester; the
//! requester meanwhile reassigns the dead worker's tasks. Workers exit when their stdin closes,
//! so they never outlive the pool even if `naac run` itself is killed.

use anyhow::Context as _;
use naac_net::Multiaddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Restarts allowed per worker over the life of the pool.
pub const MAX_RESTARTS: u32 = 10;

/// Process ids of the running workers (changes as workers restart).
pub type Pids = Arc<Mutex<Vec<Option<u32>>>>;

pub struct Pool {
    stop: watch::Sender<bool>,
    supervisors: Vec<tokio::task::JoinHandle<()>>,
    pids: Pids,
}

struct Spec {
    exe: PathBuf,
    slots: u32,
    requester: Multiaddr,
    extra: Vec<String>,
}

impl Spec {
    fn spawn(&self) -> anyhow::Result<Child> {
        Command::new(&self.exe)
            .arg("node")
            .arg("--provide")
            .args(["--slots", &self.slots.to_string()])
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--join", &self.requester.to_string()])
            .args(["--no-mdns", "--ephemeral", "--exit-with-parent"])
            .args(&self.extra)
            // Quiet unless the user asked for logs.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start provider process {}", self.exe.display()))
    }
}

impl Pool {
    /// Starts `workers` providers of `slots` slots each that dial `requester`.
    pub fn start(
        workers: u32,
        slots: u32,
        requester: &Multiaddr,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let spec = Arc::new(Spec {
            exe: std::env::current_exe().context("find the naac executable")?,
            slots,
            requester: requester.clone(),
            extra: extra.to_vec(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let pids: Pids = Arc::new(Mutex::new(vec![None; workers as usize]));
        let mut supervisors = Vec::new();
        for i in 0..workers as usize {
            let first = spec.spawn()?;
            let (spec, mut stop_rx, pids) = (spec.clone(), stop_rx.clone(), pids.clone());
            supervisors.push(tokio::spawn(async move {
                let mut child = first;
                let mut restarts = 0;
                loop {
                    // Held here: `Child::wait` would close it, and a closed stdin tells the
                    // worker to exit.
                    let stdin = child.stdin.take();
                    pids.lock().expect("pids lock")[i] = child.id();
                    tokio::select! {
                        status = child.wait() => {
                            pids.lock().expect("pids lock")[i] = None;
                            // A clean exit (Ctrl-C reached the worker too, or its stdin
                            // closed) is not a crash.
                            if *stop_rx.borrow() || status.as_ref().is_ok_and(|s| s.success()) {
                                return;
                            }
                            if restarts >= MAX_RESTARTS {
                                tracing::error!("provider worker {i} keeps dying ({status:?}); not restarting it");
                                return;
                            }
                            restarts += 1;
                            tracing::warn!("provider worker {i} exited ({status:?}); restarting it");
                            match spec.spawn() {
                                Ok(c) => child = c,
                                Err(e) => {
                                    tracing::error!("failed to restart provider worker {i}: {e:#}");
                                    return;
                                }
                            }
                        }
                        _ = stop_rx.changed() => {
                            // Closing stdin asks the worker to exit; kill it if it lingers.
                            drop(stdin);
                            if tokio::time::timeout(Duration::from_secs(2), child.wait()).await.is_err() {
                                let _ = child.kill().await;
                            }
                            return;
                        }
                    }
                }
            }));
        }
        Ok(Self {
            stop,
            supervisors,
            pids,
        })
    }

    /// The workers' process ids, for benchmarks that kill one.
    pub fn pids(&self) -> Pids {
        self.pids.clone()
    }

    /// Stops every worker and waits for them to exit.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for s in self.supervisors {
            let _ = s.await;
        }
    }
}
