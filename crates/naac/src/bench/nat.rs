//! The Internet-reach figures, in the NAT lab (`scripts/nat-lab.sh`, embedded here): two
//! home LANs behind nftables NAT and a public relay, in network namespaces, with real `naac`
//! processes in them. Per kind of NAT at home B (cone: ports kept; symmetric: a random port
//! per connection), a provider at home A joins the relay and a requester at home B, joined
//! to the relay alone, runs small jobs: how many end on a hole-punched direct connection,
//! and how soon after the `naac run` process was started. Then the task and 1 MiB result throughput over that path against the same
//! jobs without NAT (provider and requester on public addresses), and what the relay spends
//! per relayed connection. Needs root; says so and measures nothing elsewhere.

use super::{Bench, Figure, cpu_ticks, rss_of};
use anyhow::Context as _;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LAB: &str = include_str!("../../../../scripts/nat-lab.sh");
/// The lab's "Internet": public addresses for the nodes in it.
const LAB_INTERNET: &str = "198.18.0.0/16";
/// Results of the throughput job: within one relayed connection's default 16 MiB.
const BIG_RESULTS: u32 = 12;
/// Tasks of the task-throughput job.
const TINY_TASKS: u32 = 64;

/// One lab and the processes in it, all gone when dropped.
struct Lab {
    script: PathBuf,
    prefix: String,
    dir: PathBuf,
    exe: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    /// Builds a lab with router B doing `kind` of NAT; its processes keep their files in a
    /// directory named after `tag`.
    fn up(b: &Bench, kind: &str, tag: &str) -> anyhow::Result<Lab> {
        let script = b.dir.join("nat-lab.sh");
        if !script.exists() {
            std::fs::write(&script, LAB).context("write nat-lab.sh")?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        }
        let prefix = format!("nb{}{}", &kind[..1], std::process::id() % 1000);
        let out = Command::new(&script)
            .args(["up", &prefix, kind])
            .output()
            .context("run nat-lab.sh")?;
        anyhow::ensure!(
            out.status.success(),
            "nat-lab up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Lab {
            script,
            prefix,
            dir: b.dir.join(format!("nat-{tag}")),
            exe: std::env::current_exe().context("find the naac binary")?,
            children: Vec::new(),
        })
    }

    /// `naac ARGS` in namespace `ns`, with data dir `name` of its own.
    fn naac(&self, ns: &str, name: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}-{ns}", self.prefix)])
            .arg(&self.exe)
            .env("NAAC_HOME", self.dir.join(name))
            .env("NAAC_GLOBAL_RANGES", LAB_INTERNET)
            .env("NAAC_CLAIM_WINDOW", "0s")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG");
        c
    }

    /// Starts `naac node ARGS` in `ns`; returns its pid and the first address it prints
    /// that `pick` accepts.
    fn node(
        &mut self,
        ns: &str,
        name: &str,
        args: &[&str],
        pick: impl Fn(&str) -> bool,
    ) -> anyhow::Result<(u32, String)> {
        let mut child = self
            .naac(ns, name)
            .arg("node")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start naac node")?;
        let out = child.stdout.take().context("node stdout")?;
        let pid = child.id();
        self.children.push(child);
        let mut lines = BufReader::new(out).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let line = lines.next().context("the node exited")??;
            if let Some(addr) = line.strip_prefix("listening on ")
                && pick(addr)
            {
                // The node's later lines go nowhere; they are few.
                std::thread::spawn(move || lines.for_each(drop));
                return Ok((pid, addr.to_string()));
            }
        }
        anyhow::bail!("{name}: no address in 30 s")
    }

    /// Runs `job` from `ns` joined to `join`; the summary (`None` if the run failed), its
    /// stderr and its wall time, and when it started (UTC seconds since midnight, as
    /// [`stamp`] reads the log).
    fn run(
        &self,
        ns: &str,
        name: &str,
        job: &Path,
        join: &str,
    ) -> anyhow::Result<(Option<serde_json::Value>, String, Duration, f64)> {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let started = since_epoch % 86_400.0;
        let t = Instant::now();
        let out = self
            .naac(ns, name)
            .env("RUST_LOG", "naac_net=info")
            .arg("run")
            .arg(job)
            .args(["--json", "--no-mdns", "--no-pay", "--join", join, "--out"])
            .arg(self.dir.join(format!("{name}-out")))
            .output()
            .context("naac run")?;
        let wall = t.elapsed();
        let summary = out
            .status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten();
        Ok((
            summary,
            String::from_utf8_lossy(&out.stderr).into(),
            wall,
            started,
        ))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(&self.script)
            .args(["down", &self.prefix])
            .output();
    }
}

/// Seconds since midnight of a log line's timestamp (`…THH:MM:SS.ffffffZ …`).
fn stamp(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split('T').nth(1)?;
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// What one kind of NAT gave.
struct Kind {
    tries: usize,
    punched: usize,
    completed: usize,
    to_direct: Vec<f64>,
    tasks_per_s: Option<f64>,
    mib_per_s: Option<f64>,
    relay_ms_per_circuit: f64,
    relay_rss: u64,
}

fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// Tasks and MiB per second of the two throughput jobs, when each succeeded.
fn throughput(
    lab: &Lab,
    ns: &str,
    join: &str,
    jobs: &(PathBuf, PathBuf),
) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let (s, _, wall, _) = lab.run(ns, "tiny", &jobs.0, join)?;
    let tasks = s.map(|_| f64::from(TINY_TASKS) / wall.as_secs_f64());
    let (s, _, wall, _) = lab.run(ns, "big", &jobs.1, join)?;
    let mib = s.map(|_| f64::from(BIG_RESULTS) / wall.as_secs_f64());
    Ok((tasks, mib))
}

impl Bench {
    pub(super) async fn nat(&self) -> anyhow::Result<Vec<Figure>> {
        if !nix_root() {
            eprintln!("  skipped: the NAT lab needs root (network namespaces, nftables)");
            return Ok(vec![Figure {
                name: "nat",
                value: "skipped (needs root)".into(),
                target: "-",
                baseline: "-".into(),
                ratio: None,
                raw: json!({"skipped": "needs root"}),
            }]);
        }
        let tries = if self.quick { 5 } else { 20 };
        let small = self.job(
            "nat-small",
            "args = [\"sha256\", \"{i}\", \"100000\"]\n[sweep]\ni = { from = 0, to = 4 }\n",
        )?;
        let jobs = (
            self.job(
                "nat-tiny",
                &format!("args = [\"noop\"]\n[sweep]\ni = {{ from = 0, to = {TINY_TASKS} }}\n"),
            )?,
            self.job(
                "nat-big",
                &format!(
                    "args = [\"outfile\", \"r{{i}}.bin\", \"1048576\"]\n[sweep]\ni = {{ from = 0, to = {BIG_RESULTS} }}\n"
                ),
            )?,
        );
        let mut kinds = Vec::new();
        for kind in ["cone", "symmetric"] {
            eprintln!("  {kind} NAT at home B: {tries} jobs, then the throughput jobs");
            kinds.push(self.nat_kind(kind, tries, &small, &jobs)?);
        }
        // The same jobs without NAT: the provider on the public host, the requester on
        // router B's public side.
        let (base_tasks, base_mib) = {
            let mut lab = Lab::up(self, "cone", "no-nat")?;
            let (_, provider) = lab.node(
                "pub",
                "base-provider",
                &["--provide", "--ephemeral", "--slots", "2", "--no-mdns"],
                |a| a.starts_with("/ip4/198.18.0.10/"),
            )?;
            // Warm, as the NAT runs' provider is after its small jobs (the module compiled).
            lab.run("rB", "warm", &small, &provider)?;
            throughput(&lab, "rB", &provider, &jobs)?
        };
        Ok(figures(&kinds, base_tasks, base_mib))
    }

    fn nat_kind(
        &self,
        kind: &str,
        tries: usize,
        small: &Path,
        jobs: &(PathBuf, PathBuf),
    ) -> anyhow::Result<Kind> {
        let mut lab = Lab::up(self, kind, kind)?;
        let (relay_pid, relay) = lab.node(
            "pub",
            "relay",
            &[
                "--relay",
                "--no-mdns",
                "--listen",
                "/ip4/198.18.0.10/tcp/4001",
            ],
            |_| true,
        )?;
        let (_, circuit) = lab.node(
            "hA",
            "provider",
            &[
                "--provide",
                "--ephemeral",
                "--slots",
                "2",
                "--no-mdns",
                "--join",
                &relay,
                "--listen",
                "/ip4/0.0.0.0/tcp/4002",
            ],
            |a| a.contains("/p2p-circuit/"),
        )?;
        let peer = circuit.rsplit('/').next().unwrap_or_default().to_string();
        let ticks0 = cpu_ticks(relay_pid);
        let (mut punched, mut completed, mut to_direct) = (0, 0, Vec::new());
        for i in 0..tries {
            let (summary, err, _, started) = lab.run("hB", &format!("small{i}"), small, &relay)?;
            completed += usize::from(summary.is_some());
            let first = Some(started);
            let hit = err
                .lines()
                .find(|l| l.contains(&format!("direct connection to {peer} (hole punched)")))
                .and_then(stamp);
            if let (Some(a), Some(b)) = (first, hit) {
                punched += 1;
                to_direct.push(b - a);
            }
        }
        // /proc counts CPU time in USER_HZ ticks, 100 a second.
        let relay_ms_per_circuit =
            cpu_ticks(relay_pid).saturating_sub(ticks0) as f64 * 10.0 / tries.max(1) as f64;
        let (tasks_per_s, mib_per_s) = throughput(&lab, "hB", &relay, jobs)?;
        Ok(Kind {
            tries,
            punched,
            completed,
            to_direct,
            tasks_per_s,
            mib_per_s,
            relay_ms_per_circuit,
            relay_rss: rss_of(relay_pid),
        })
    }
}

fn nix_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn figures(kinds: &[Kind], base_tasks: Option<f64>, base_mib: Option<f64>) -> Vec<Figure> {
    let (cone, sym) = (&kinds[0], &kinds[1]);
    let mut to_direct = cone.to_direct.clone();
    let med = median(&mut to_direct);
    let tries: usize = kinds.iter().map(|k| k.tries).sum();
    let completed: usize = kinds.iter().map(|k| k.completed).sum();
    let ratio = |v: Option<f64>, base: Option<f64>| Some(v? / base?);
    let fmt = |v: Option<f64>, unit: &str| v.map_or("failed".into(), |v| format!("{v:.1} {unit}"));
    let base = |v: Option<f64>, unit: &str| -> String { format!("no NAT {}", fmt(v, unit)) };
    vec![
        Figure {
            name: "nat: hole punched, cone NAT",
            value: format!("{}/{}", cone.punched, cone.tries),
            target: ">= 70% (measured field)",
            baseline: "-".into(),
            ratio: None,
            raw: json!({"punched": cone.punched, "tries": cone.tries}),
        },
        Figure {
            name: "nat: hole punched, symmetric NAT",
            value: format!("{}/{}", sym.punched, sym.tries),
            target: "0 (relayed)",
            baseline: "-".into(),
            ratio: None,
            raw: json!({"punched": sym.punched, "tries": sym.tries}),
        },
        Figure {
            name: "nat: run start to direct (p50)",
            value: med.map_or("none".into(), |m| format!("{m:.3} s")),
            target: "<= 3 s",
            baseline: "-".into(),
            ratio: None,
            raw: json!({"median_seconds": med, "samples": cone.to_direct}),
        },
        Figure {
            name: "nat: jobs completed",
            value: format!("{completed}/{tries}"),
            target: "100%",
            baseline: "-".into(),
            ratio: None,
            raw: json!({"completed": completed, "tries": tries}),
        },
        Figure {
            name: "nat: tasks/s, hole punched",
            value: fmt(cone.tasks_per_s, "/s"),
            target: ">= 0.9x no NAT",
            baseline: base(base_tasks, "/s"),
            ratio: ratio(cone.tasks_per_s, base_tasks),
            raw: json!({"tasks_per_s": cone.tasks_per_s, "no_nat": base_tasks}),
        },
        Figure {
            name: "nat: tasks/s, relayed",
            value: fmt(sym.tasks_per_s, "/s"),
            target: "completes",
            baseline: base(base_tasks, "/s"),
            ratio: ratio(sym.tasks_per_s, base_tasks),
            raw: json!({"tasks_per_s": sym.tasks_per_s, "no_nat": base_tasks}),
        },
        Figure {
            name: "nat: 1 MiB results, hole punched",
            value: fmt(cone.mib_per_s, "MiB/s"),
            target: ">= 0.9x no NAT",
            baseline: base(base_mib, "MiB/s"),
            ratio: ratio(cone.mib_per_s, base_mib),
            raw: json!({"mib_per_s": cone.mib_per_s, "no_nat": base_mib}),
        },
        Figure {
            name: "nat: 1 MiB results, relayed",
            value: fmt(sym.mib_per_s, "MiB/s"),
            target: "completes",
            baseline: base(base_mib, "MiB/s"),
            ratio: ratio(sym.mib_per_s, base_mib),
            raw: json!({"mib_per_s": sym.mib_per_s, "no_nat": base_mib}),
        },
        Figure {
            name: "nat: relay cost per circuit",
            value: format!(
                "{:.1} ms CPU, {} MiB RSS",
                sym.relay_ms_per_circuit,
                sym.relay_rss >> 20
            ),
            target: "-",
            baseline: "-".into(),
            ratio: None,
            raw: json!({
                "cpu_ms_per_circuit": {"cone": cone.relay_ms_per_circuit, "symmetric": sym.relay_ms_per_circuit},
                "rss_bytes": sym.relay_rss,
            }),
        },
    ]
}
