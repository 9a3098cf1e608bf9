//! The node's figures (`--only daemon`): a requester node (`naac node`, its API on a free
//! loopback port, its own data dir) idle for a few seconds (CPU and memory), then the same
//! jobs submitted through its API and run with `naac run`: one no-op task (submit → done)
//! and 10,000 no-op tasks, each on an embedded pool of 2 workers; and how soon a job's
//! end reaches a client following its event stream.

use super::{Bench, Figure, cpu_ticks, rss_of};
use anyhow::Context as _;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A requester node, killed on drop.
struct Node {
    child: Child,
    api: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn naac(home: &Path) -> anyhow::Result<Command> {
    let mut c = Command::new(std::env::current_exe().context("find the naac binary")?);
    c.env("NAAC_HOME", home).env_remove("RUST_LOG");
    Ok(c)
}

impl Bench {
    fn start_node(&self) -> anyhow::Result<Node> {
        let home = self.dir.join("daemon-home");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let api = format!("127.0.0.1:{port}");
        let mut child = naac(&home)?
            .args(["node", "--no-mdns", "--api", &api])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start naac node")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("node stdout")?).read_line(&mut line)?;
        anyhow::ensure!(
            line.starts_with("api on "),
            "unexpected node output {line:?}"
        );
        Ok(Node { child, api })
    }

    /// Submits `job` to `node` and follows it to the end; wall seconds.
    fn through_api(&self, node: &Node, job: &Path) -> anyhow::Result<f64> {
        let home = self.dir.join("daemon-home");
        let t = Instant::now();
        let out = naac(&home)?
            .args(["submit", "--api", &node.api])
            .arg(job)
            .output()
            .context("naac submit")?;
        anyhow::ensure!(
            out.status.success(),
            "submit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let out = naac(&home)?
            .args(["status", &id, "--watch", "--json", "--api", &node.api])
            .output()
            .context("naac status")?;
        let wall = t.elapsed().as_secs_f64();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
        anyhow::ensure!(v["state"] == "done", "the job ended {}: {v}", v["state"]);
        Ok(wall)
    }

    /// Submits `job` and follows its event stream (`GET /v1/jobs/{id}/events`) to the
    /// end; how long after the job ended (its `finished_ms`) the `done` event arrived, ms.
    fn event_latency(&self, node: &Node, job: &Path) -> anyhow::Result<f64> {
        use std::io::{Read, Write};
        let home = self.dir.join("daemon-home");
        let out = naac(&home)?
            .args(["submit", "--api", &node.api])
            .arg(job)
            .output()
            .context("naac submit")?;
        anyhow::ensure!(out.status.success(), "submit failed");
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let token = std::fs::read_to_string(home.join("api.token"))?;
        let mut c = std::net::TcpStream::connect(&node.api)?;
        write!(
            c,
            "GET /v1/jobs/{id}/events HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            node.api,
            token.trim()
        )?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = c.read(&mut chunk)?;
            anyhow::ensure!(n > 0, "the event stream ended before the job did");
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs_f64()
                * 1e3;
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            for line in text.lines() {
                if let Some(d) = line.strip_prefix("data: ")
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(d)
                    && v["state"] == "done"
                    && let Some(f) = v["finished_ms"].as_f64()
                {
                    return Ok((at - f).max(0.0));
                }
            }
        }
    }

    /// Runs `job` with `naac run` (an embedded pool of 2); wall seconds.
    fn with_run(&self, job: &Path, name: &str) -> anyhow::Result<f64> {
        let t = Instant::now();
        let out = naac(&self.dir.join("run-home"))?
            .args(["run", "--json", "--workers", "2", "--out"])
            .arg(self.dir.join(name))
            .arg(job)
            .output()
            .context("naac run")?;
        anyhow::ensure!(
            out.status.success(),
            "run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(t.elapsed().as_secs_f64())
    }

    pub(super) async fn daemon(&self) -> anyhow::Result<Vec<Figure>> {
        let node = self.start_node()?;
        let pid = node.child.id();
        // Idle, API on: CPU over a few seconds (after start-up), memory at the end.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let secs = if self.quick { 3.0 } else { 10.0 };
        let t0 = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        // /proc counts CPU time in USER_HZ ticks, 100 a second.
        let cpu = cpu_ticks(pid).saturating_sub(t0) as f64 / 100.0 / secs * 100.0;
        let rss = rss_of(pid);
        let one = self.job("daemon-one", "args = [\"noop\"]\n")?;
        let n = if self.quick { 2_000 } else { 10_000 };
        let many = self.job(
            "daemon-many",
            &format!("args = [\"noop\"]\n[sweep]\ni = {{ from = 0, to = {n} }}\n"),
        )?;
        let one_api = self.through_api(&node, &one)?;
        let one_run = self.with_run(&one, "daemon-one-out")?;
        let many_api = self.through_api(&node, &many)?;
        let many_run = self.with_run(&many, "daemon-many-out")?;
        let mut lat = Vec::new();
        for _ in 0..if self.quick { 3 } else { 10 } {
            lat.push(self.event_latency(&node, &one)?);
        }
        lat.sort_by(f64::total_cmp);
        let (median, worst) = (lat[lat.len() / 2], lat[lat.len() - 1]);
        Ok(vec![
            Figure {
                name: "event latency: job ended to its SSE event",
                value: format!("{median:.1} ms median, {worst:.1} ms worst"),
                target: "<= 1 s (expect <= 50 ms)",
                baseline: "-".into(),
                ratio: None,
                raw: json!({"median_ms": median, "worst_ms": worst, "samples_ms": lat}),
            },
            Figure {
                name: "idle requester node CPU (API on)",
                value: format!("{cpu:.2}% of a core"),
                target: "<= 1%",
                baseline: "-".into(),
                ratio: None,
                raw: json!({"percent_of_one_core": cpu, "seconds": secs}),
            },
            Figure {
                name: "idle requester node RSS",
                value: format!("{:.1} MiB", rss as f64 / (1 << 20) as f64),
                target: "<= 40 MiB",
                baseline: "-".into(),
                ratio: None,
                raw: json!({"bytes": rss}),
            },
            Figure {
                name: "1 no-op task, submit to done",
                value: format!("{:.2} s", one_api),
                target: "~ naac run",
                baseline: format!("naac run {one_run:.2} s"),
                ratio: Some(one_run / one_api),
                raw: json!({"api_seconds": one_api, "run_seconds": one_run}),
            },
            Figure {
                name: "no-op tasks through the API",
                value: format!("{:.0} tasks/s", n as f64 / many_api),
                target: ">= 0.9x naac run",
                baseline: format!("naac run {:.0}/s", n as f64 / many_run),
                ratio: Some(many_run / many_api),
                raw: json!({"tasks": n, "api_seconds": many_api, "run_seconds": many_run}),
            },
        ])
    }
}
