//! Figures of `naac run` exactly as a user runs it: a process of its own, the default paid
//! embedded pool (its own bank, signed results), a fresh `NAAC_HOME`. Throughput with the
//! results on tmpfs and on disk, and the time from starting `naac run` to the first task's
//! results on disk.

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A scratch home and job directory on one filesystem.
pub(super) struct Cli {
    base: PathBuf,
}

/// What one `naac run` measured.
pub(super) struct Ran {
    /// The summary's submit-to-results seconds.
    pub wall: f64,
    /// The summary, as printed.
    pub summary: serde_json::Value,
}

impl Cli {
    pub fn new(base: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(base).with_context(|| format!("create {}", base.display()))?;
        std::fs::write(base.join("testkit.wasm"), super::TESTKIT).context("write testkit.wasm")?;
        Ok(Self {
            base: base.to_path_buf(),
        })
    }

    fn job(&self, name: &str, tasks: u32) -> anyhow::Result<PathBuf> {
        let p = self.base.join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!(
                "name = \"{name}\"\nmodule = \"testkit.wasm\"\nargs = [\"noop\"]\n[sweep]\ni = {{ from = 0, to = {tasks} }}\n"
            ),
        )
        .with_context(|| format!("write {}", p.display()))?;
        Ok(p)
    }

    fn command(&self, job: &Path, out: &Path) -> anyhow::Result<tokio::process::Command> {
        let mut c =
            tokio::process::Command::new(std::env::current_exe().context("find the naac binary")?);
        c.env("NAAC_HOME", self.base.join("home"))
            .env_remove("NAAC_BANK")
            .arg("run")
            .arg(job)
            .args(["--workers", "2", "--json", "--out"])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Ok(c)
    }

    /// `tasks` no-op tasks through `naac run`'s default (paid) embedded pool of 2 workers.
    pub async fn run(&self, name: &str, tasks: u32) -> anyhow::Result<Ran> {
        let job = self.job(name, tasks)?;
        let out = self.base.join(format!("out-{name}"));
        let o = self
            .command(&job, &out)?
            .output()
            .await
            .context("run naac run")?;
        anyhow::ensure!(
            o.status.success(),
            "naac run failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&o.stdout).context("naac run --json printed no summary")?;
        anyhow::ensure!(
            summary["cost"]["settlements"].as_u64().unwrap_or(0) > 0,
            "the run was not paid: {summary}"
        );
        let wall = summary["wall_seconds"]
            .as_f64()
            .context("summary without wall_seconds")?;
        Ok(Ran { wall, summary })
    }

    /// Seconds from starting `naac run` of a one-task job until its results are on disk.
    pub async fn first_task(&self, name: &str) -> anyhow::Result<f64> {
        let job = self.job(name, 1)?;
        let out = self.base.join(format!("out-{name}"));
        let done = out.join("tasks").join("0");
        let t0 = Instant::now();
        let mut child = self
            .command(&job, &out)?
            .spawn()
            .context("start naac run")?;
        let seen = loop {
            if done.exists() {
                break t0.elapsed();
            }
            if let Some(status) = child.try_wait()? {
                anyhow::ensure!(status.success(), "naac run failed");
                anyhow::ensure!(done.exists(), "naac run wrote no {}", done.display());
                break t0.elapsed();
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(60),
                "no result within a minute"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        let status = child.wait().await?;
        anyhow::ensure!(status.success(), "naac run failed");
        Ok(seen.as_secs_f64())
    }
}
