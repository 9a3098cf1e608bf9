//! The owners figures: pause latency, an idle provider's footprint, and how closely
//! `max_cpu_percent` holds. Each starts real `naac node --provide` processes with their own
//! data dir and policy, and a real `naac run --join` against them.

use super::{Bench, Figure, cpu_ticks};
use anyhow::Context as _;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A provider process with its own data dir, killed on drop.
struct Node {
    child: Child,
    addr: String,
    home: PathBuf,
}

impl Node {
    fn start(dir: &Path, name: &str, slots: u32, policy: &str) -> anyhow::Result<Node> {
        let home = dir.join(format!("home-{name}"));
        std::fs::create_dir_all(&home)?;
        std::fs::write(home.join("policy.toml"), policy)?;
        let exe = std::env::current_exe().context("find the naac binary")?;
        let mut child = Command::new(exe)
            .env("NAAC_HOME", &home)
            .args([
                "node",
                "--provide",
                "--no-mdns",
                "--slots",
                &slots.to_string(),
            ])
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start a provider")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("provider stdout")?).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected provider output {line:?}"))?
            .to_string();
        Ok(Node { child, addr, home })
    }

    fn ticks(&self) -> u64 {
        cpu_ticks(self.child.id())
    }

    fn rss(&self) -> u64 {
        super::rss_of(self.child.id())
    }

    /// Starts `naac run JOB --join` this node in the background.
    fn run(&self, job: &Path, out: &Path) -> anyhow::Result<Killed> {
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .env("NAAC_HOME", self.home.join("requester"))
            .arg("run")
            .arg(job)
            .args(["--json", "--no-mdns", "--join", &self.addr, "--out"])
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start naac run")?;
        Ok(Killed(child))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the node's CPU counter has moved by `ticks` (a task is running).
fn wait_busy(node: &Node, ticks: u64, limit: Duration) -> anyhow::Result<()> {
    let t0 = node.ticks();
    let start = Instant::now();
    while node.ticks() < t0 + ticks {
        anyhow::ensure!(start.elapsed() < limit, "the task did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Time from `trip` until the node's CPU counter stops moving (no tick for 100 ms).
fn time_to_quiet(node: &Node, trip: Instant) -> Duration {
    let mut last = node.ticks();
    let mut last_change = trip;
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let t = node.ticks();
        let now = Instant::now();
        if t != last {
            last = t;
            last_change = now;
        } else if now.duration_since(last_change) >= Duration::from_millis(100) {
            return last_change.duration_since(trip);
        }
        if now.duration_since(trip) > Duration::from_secs(5) {
            return now.duration_since(trip);
        }
    }
}

const SPIN_JOB: &str =
    "module = \"testkit.wasm\"\n[limits]\ntimeout = \"1h\"\nfuel = 10_000_000_000_000\n";

impl Bench {
    pub(super) async fn owner(&self) -> anyhow::Result<Vec<Figure>> {
        let dir = self.dir.clone();
        let quick = self.quick;
        tokio::task::spawn_blocking(move || owner_figures(&dir, quick)).await?
    }
}

fn owner_figures(dir: &Path, quick: bool) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let cores = crate::node::cores();

    // Idle footprint: a provider with nothing to do, after its start-up probe, under the
    // desktop defaults (an empty policy: it watches for the owner, logind included), helper
    // processes counted.
    let idle = Node::start(dir, "idle", cores, "")?;
    std::thread::sleep(Duration::from_secs(3));
    let secs = if quick { 10 } else { 30 };
    let ticks = || naac_node::device::cpu_ticks_with_children_of(idle.child.id()).unwrap_or(0);
    let t0 = ticks();
    std::thread::sleep(Duration::from_secs(secs));
    // Ticks are 1/100 s: ticks per second is the percent of one core.
    let cpu = (ticks() - t0) as f64 / secs as f64;
    let rss = idle.rss();
    drop(idle);
    figures.push(Figure {
        name: "idle provider CPU",
        value: format!("{cpu:.2}% of a core"),
        target: "<= 1%",
        baseline: "-".into(),
        ratio: None,
        raw: json!({"percent_of_one_core": cpu, "seconds": secs}),
    });
    figures.push(Figure {
        name: "idle provider RSS",
        value: format!("{:.1} MiB", rss as f64 / (1 << 20) as f64),
        target: "<= 40 MiB",
        baseline: "-".into(),
        ratio: None,
        raw: json!({"bytes": rss}),
    });

    // Pause latency: a CPU-bound task, then the owner pauses (`naac pause` writes the pause
    // file) → the guest stops using CPU.
    let node = Node::start(dir, "pause", 1, "idle_only = false\n")?;
    let job = dir.join("owner-pause.toml");
    std::fs::write(
        &job,
        format!("name = \"owner-pause\"\nargs = [\"spin\", \"600000\"]\n{SPIN_JOB}"),
    )?;
    let run = node.run(&job, &dir.join("out-owner-pause"))?;
    wait_busy(&node, 50, Duration::from_secs(30))?;
    let pause_file = node.home.join("paused");
    let mut lat = Vec::new();
    for _ in 0..if quick { 3 } else { 8 } {
        std::thread::sleep(Duration::from_millis(600));
        let trip = Instant::now();
        std::fs::write(&pause_file, "")?;
        lat.push(time_to_quiet(&node, trip));
        std::fs::remove_file(&pause_file)?;
        wait_busy(&node, 20, Duration::from_secs(10))?;
    }
    drop(run);
    drop(node);
    lat.sort();
    let median = lat[lat.len() / 2];
    let max = lat[lat.len() - 1];
    figures.push(Figure {
        name: "pause latency (owner → guest stops)",
        value: format!(
            "{:.0} ms median, {:.0} max",
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        ),
        target: "<= 1 s (100 ms)",
        baseline: "-".into(),
        ratio: None,
        raw: json!({
            "median_ms": median.as_secs_f64() * 1e3,
            "max_ms": max.as_secs_f64() * 1e3,
            "samples_ms": lat.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>(),
        }),
    });

    // max_cpu_percent = 50 with a CPU-bound task per core.
    let node = Node::start(
        dir,
        "cap",
        cores,
        "idle_only = false\nmax_cpu_percent = 50\n",
    )?;
    let job = dir.join("owner-cap.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"owner-cap\"\nargs = [\"spin\", \"600000\", \"{{i}}\"]\n{SPIN_JOB}[sweep]\ni = {{ from = 0, to = 64 }}\n"
        ),
    )?;
    let run = node.run(&job, &dir.join("out-owner-cap"))?;
    wait_busy(&node, 50, Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(5));
    let secs = if quick { 15 } else { 60 };
    let (t0, w0) = (node.ticks(), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let used = (node.ticks() - t0) as f64 / 100.0 / w0.elapsed().as_secs_f64() / f64::from(cores);
    drop(run);
    drop(node);
    figures.push(Figure {
        name: "max_cpu_percent = 50, CPU-bound",
        value: format!("{:.1}% of the machine", used * 100.0),
        target: "50% ± 10%",
        baseline: "-".into(),
        ratio: None,
        raw: json!({"percent_of_machine": used * 100.0, "seconds": secs, "cores": cores}),
    });
    Ok(figures)
}
