//! `naac bench`: the figures the project tracks, each printed with its target and the baseline
//! it is compared with (Ray and Dask measured on the same 2-core machine, see issue #2).
//!
//! Every figure runs the real thing: provider processes on 127.0.0.1 talking libp2p to this
//! process, real wasmtime, results written to disk. Use a release build:
//! `cargo run --release -- bench`.

mod cli;
mod daemon;
mod economy;
mod floors;
mod guest;
mod hostile;
mod nat;
mod owner;
mod sim;
mod stages;
mod store;
mod tokens;

use crate::embedded::Pool;
use crate::run::{Exec, Executed, execute};
use anyhow::Context as _;
use naac_net::{Event, Keypair, Multiaddr};
use naac_proto::{Assign, Request, RequestBody, Response, ResponseBody, TaskSpec};
use naac_sandbox::{Sandbox, SandboxConfig, TaskRun};
use naac_types::{ContentId, JobId, Limits, Outcome};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const TESTKIT: &[u8] = include_bytes!("../../../examples/testkit/testkit.wasm");

const ALL: &[&str] = &[
    "throughput",
    "latency",
    "scaling",
    "guest",
    "gather",
    "failover",
    "verify",
    "owner",
    "economy",
    "hostile",
    "nat",
    "daemon",
    "store",
    "stages",
    "tokens",
    "sim",
];

#[derive(clap::Args)]
pub struct Args {
    /// Smaller workloads: a quick look, noisier figures
    #[arg(long)]
    quick: bool,
    /// Print one JSON object with every figure on stdout
    #[arg(long)]
    json: bool,
    /// Run only these (comma-separated): throughput, latency, scaling, guest, gather, failover,
    /// verify, owner, economy, hostile, nat (nat needs root: it builds network namespaces
    /// with real NAT), daemon, store, stages, tokens
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<String>,
    /// Where job outputs go [default: a temporary dir on /dev/shm (tmpfs) when there is one,
    /// so the figures measure naac rather than the disk; else the system temp dir]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Internal: serve the transport floor (answers every request with BYTES bytes)
    #[arg(long, hide = true, value_name = "BYTES")]
    floor_server: Option<usize>,
}

struct Figure {
    name: &'static str,
    value: String,
    target: &'static str,
    baseline: String,
    /// Measured over the best baseline (higher is better), when comparable.
    ratio: Option<f64>,
    raw: serde_json::Value,
}

pub async fn main(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(bytes) = a.floor_server {
        floors::serve(bytes).await?;
        return Ok(ExitCode::SUCCESS);
    }
    for o in &a.only {
        if !ALL.contains(&o.as_str()) {
            eprintln!(
                "error: unknown benchmark {o:?}\nhint: choose from {}",
                ALL.join(", ")
            );
            return Ok(ExitCode::from(2));
        }
    }
    let want = |n: &str| a.only.is_empty() || a.only.iter().any(|o| o == n);
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; run `cargo run --release -- bench` for real figures"
        );
    }
    let base = a.dir.clone().unwrap_or_else(|| {
        let shm = PathBuf::from("/dev/shm");
        if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        }
    });
    let dir = tempfile::Builder::new()
        .prefix("naac-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("create a scratch dir in {}", base.display()))?;
    eprintln!("bench: job outputs in {}", dir.path().display());
    std::fs::write(dir.path().join("testkit.wasm"), TESTKIT).context("write testkit.wasm")?;
    let b = Bench {
        dir: dir.path().to_path_buf(),
        quick: a.quick,
    };
    let mut figures = Vec::new();
    let steps: [(&str, BenchFn); 16] = [
        ("throughput", |b| Box::pin(b.throughput())),
        ("latency", |b| Box::pin(b.latency())),
        ("scaling", |b| Box::pin(b.scaling())),
        ("guest", |b| Box::pin(b.guest())),
        ("gather", |b| Box::pin(b.gather())),
        ("failover", |b| Box::pin(b.failover())),
        ("verify", |b| Box::pin(b.verify())),
        ("owner", |b| Box::pin(b.owner())),
        ("economy", |b| Box::pin(b.economy())),
        ("hostile", |b| Box::pin(b.hostile())),
        ("nat", |b| Box::pin(b.nat())),
        ("daemon", |b| Box::pin(b.daemon())),
        ("store", |b| Box::pin(b.store())),
        ("stages", |b| Box::pin(b.stages())),
        ("tokens", |b| Box::pin(b.tokens())),
        ("sim", |b| Box::pin(b.sim())),
    ];
    for (name, f) in steps {
        if !want(name) {
            continue;
        }
        eprintln!("bench: {name} ...");
        let mut got = f(&b).await.with_context(|| format!("benchmark {name}"))?;
        for fig in &got {
            eprintln!("  {}: {}", fig.name, fig.value);
        }
        figures.append(&mut got);
    }
    if a.json {
        let v: serde_json::Map<String, serde_json::Value> = figures
            .iter()
            .map(|f| (f.name.to_string(), f.raw.clone()))
            .collect();
        println!("{}", serde_json::Value::Object(v));
    } else {
        println!(
            "{:<34} {:>22} {:>16} {:>26} {:>9}",
            "figure", "measured", "target", "baseline", "vs best"
        );
        for f in &figures {
            println!(
                "{:<34} {:>22} {:>16} {:>26} {:>9}",
                f.name,
                f.value,
                f.target,
                f.baseline,
                f.ratio.map(|r| format!("{r:.2}x")).unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

type BenchFn = for<'a> fn(
    &'a Bench,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = anyhow::Result<Vec<Figure>>> + 'a>,
>;

struct Bench {
    dir: PathBuf,
    quick: bool,
}

impl Bench {
    fn job(&self, name: &str, body: &str) -> anyhow::Result<PathBuf> {
        let p = self.dir.join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!("name = \"{name}\"\nmodule = \"testkit.wasm\"\n{body}"),
        )
        .with_context(|| format!("write {}", p.display()))?;
        Ok(p)
    }

    /// Runs a job on an embedded pool of `workers`; returns wall seconds (submit → results).
    async fn run(
        &self,
        job: &Path,
        workers: u32,
        on_pool: Option<tokio::sync::oneshot::Sender<crate::embedded::Pids>>,
    ) -> anyhow::Result<f64> {
        Ok(self.run_timed(job, workers, on_pool).await?.0)
    }

    /// Like `run`, also returning the seconds spent before the first provider joined.
    async fn run_timed(
        &self,
        job: &Path,
        workers: u32,
        on_pool: Option<tokio::sync::oneshot::Sender<crate::embedded::Pids>>,
    ) -> anyhow::Result<(f64, f64)> {
        let f = self.run_with(job, workers, on_pool, &[]).await?;
        Ok((
            f.summary.wall_seconds,
            f.summary.first_provider_seconds.unwrap_or(0.0),
        ))
    }

    /// Runs a job on an embedded pool whose workers get `provider_args`; returns the result.
    async fn run_with(
        &self,
        job: &Path,
        workers: u32,
        on_pool: Option<tokio::sync::oneshot::Sender<crate::embedded::Pids>>,
        provider_args: &[&str],
    ) -> anyhow::Result<Box<naac_node::requester::Finished>> {
        let out = self.dir.join(format!(
            "out-{}-{workers}-{}",
            job.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id() as u128 + Instant::now().elapsed().as_nanos()
        ));
        let exec = Exec {
            job: job.to_path_buf(),
            workers: Some(workers),
            out: Some(out.clone()),
            join: Vec::new(),
            mdns: false,
            provider_wait: Duration::from_secs(30),
            provider_args: provider_args.iter().map(|a| a.to_string()).collect(),
            quiet: true,
            on_pool,
            no_wait: false,
            local: 0,
            local_fallback: true,
            bank: crate::run::BankChoice::None,
            claim_window: None,
            unpaid: false,
            stop: None,
            progress: None,
            resume: false,
            identity: None,
            pool_token: None,
            data_tokens: Vec::new(),
            spend_token: None,
        };
        let f = match execute(exec).await? {
            Executed::Done(f) => f,
            Executed::Invalid(e) => anyhow::bail!("benchmark job is invalid: {e:#}"),
            Executed::Refused(e) => anyhow::bail!("benchmark job refused: {e}"),
        };
        anyhow::ensure!(
            f.success(),
            "benchmark job failed: {:?}",
            f.summary.failures.first()
        );
        // Outputs stay until the end: deleting thousands of files makes ext4 slow to create
        // the next run's (it scans for recently deleted inodes), which would skew figures.
        Ok(f)
    }

    async fn throughput(&self) -> anyhow::Result<Vec<Figure>> {
        let n = if self.quick { 2_000 } else { 10_000 };
        let job = self.job(
            "noop",
            &format!("args = [\"noop\"]\n[sweep]\ni = {{ from = 0, to = {n} }}\n"),
        )?;
        let (wall, startup) = self.run_timed(&job, 2, None).await?;
        let rate = n as f64 / wall;
        let mut figures = vec![Figure {
            name: "no-op tasks, unpaid",
            value: format!("{rate:.0} tasks/s"),
            target: ">= 10000/s",
            baseline: "Ray 1780/s, Dask 623/s".into(),
            ratio: Some(rate / 1780.0),
            raw: json!({"tasks": n, "wall_seconds": wall, "startup_seconds": startup, "tasks_per_second": rate}),
        }];
        // `naac run` as a user runs it: paid through the embedded pool's bank, signed
        // results, outputs here (tmpfs) and on disk.
        let tmpfs = cli::Cli::new(&self.dir.join("cli"))?;
        let paid = tmpfs.run("paid", n).await?;
        let paid_rate = n as f64 / paid.wall;
        let disk_dir = tempfile::Builder::new()
            .prefix("naac-bench-disk-")
            .tempdir()
            .context("create a scratch dir on disk")?;
        let disk = cli::Cli::new(disk_dir.path())?.run("paid", n).await?;
        let disk_rate = n as f64 / disk.wall;
        figures.push(Figure {
            name: "no-op tasks, paid and signed",
            value: format!("{paid_rate:.0} tasks/s"),
            target: ">= 9000/s",
            baseline: "Ray 1780/s, Dask 623/s".into(),
            ratio: Some(paid_rate / 1780.0),
            raw: json!({"tasks": n, "wall_seconds": paid.wall, "tasks_per_second": paid_rate, "settlements": paid.summary["cost"]["settlements"]}),
        });
        figures.push(Figure {
            name: "  same, results on disk",
            value: format!("{disk_rate:.0} tasks/s"),
            target: ">= 0.8x tmpfs",
            baseline: format!("tmpfs {paid_rate:.0}/s"),
            ratio: Some(disk_rate / paid_rate),
            raw: json!({"tasks": n, "wall_seconds": disk.wall, "tasks_per_second": disk_rate, "dir": disk_dir.path()}),
        });
        // Time to the first task, on the home the paid runs above filled (a ledger of
        // ~10,000 entries); the run before it is shown beside.
        let before = tmpfs.first_task("first-before").await?;
        let warm = tmpfs.first_task("first-warm").await?;
        figures.push(Figure {
            name: "naac run start to first result",
            value: format!("{:.0} ms", warm * 1e3),
            target: "<= 50 ms",
            baseline: format!("the run before {:.0} ms", before * 1e3),
            ratio: None,
            raw: json!({"seconds": warm, "run_before_seconds": before, "ledger": "after 2 x 10,000 paid tasks"}),
        });
        Ok(figures)
    }

    async fn latency(&self) -> anyhow::Result<Vec<Figure>> {
        let rounds = if self.quick { 200 } else { 1_000 };
        let pcts = |mut v: Vec<Duration>| {
            v.sort();
            let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            (at(0.5), at(0.99))
        };
        let (median, p99) = pcts(round_trips(rounds).await?);
        // The floor: a bare request-response over the same transport, in the same run.
        let (floor_median, floor_p99) = pcts(floors::round_trips(rounds).await?);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Ok(vec![Figure {
            name: "tiny task round trip, median/p99",
            value: format!("{:.2} / {:.2} ms", ms(median), ms(p99)),
            target: "<= 0.4 / 0.8 ms",
            baseline: format!("bare libp2p {:.2}/{:.2}", ms(floor_median), ms(floor_p99)),
            ratio: Some(ms(floor_median) / ms(median).max(1e-6)),
            raw: json!({"rounds": rounds, "median_ms": ms(median), "p99_ms": ms(p99), "floor_median_ms": ms(floor_median), "floor_p99_ms": ms(floor_p99), "ray_median_ms": 1.5, "dask_median_ms": 10.7}),
        }])
    }

    async fn scaling(&self) -> anyhow::Result<Vec<Figure>> {
        let tasks = if self.quick { 8 } else { 16 };
        let job = self.job(
            "cpu",
            &format!(
                "args = [\"pi\", \"{{seed}}\", \"60000000\"]\n[sweep]\nseed = {{ from = 0, to = {tasks} }}\n"
            ),
        )?;
        let t1 = self.run(&job, 1, None).await?;
        let t2 = self.run(&job, 2, None).await?;
        let eff = t1 / (2.0 * t2);
        Ok(vec![Figure {
            name: "CPU-bound job, 1 -> 2 providers",
            value: format!("efficiency {eff:.2}"),
            target: ">= 0.95",
            baseline: "Dask 0.86".into(),
            ratio: Some(eff / 0.86),
            raw: json!({"tasks": tasks, "one_provider_seconds": t1, "two_providers_seconds": t2, "efficiency": eff}),
        }])
    }

    async fn guest(&self) -> anyhow::Result<Vec<Figure>> {
        let (work, quick) = (self.dir.join("work"), self.quick);
        // wasmtime-wasi's synchronous API must not run on an async worker thread.
        tokio::task::spawn_blocking(move || guest::figures(work, quick))
            .await
            .context("guest benchmark thread panicked")?
    }

    async fn gather(&self) -> anyhow::Result<Vec<Figure>> {
        let tasks = if self.quick { 50 } else { 200 };
        let job = self.job(
            "gather",
            &format!(
                "args = [\"bytes\", \"1048576\"]\n[sweep]\ni = {{ from = 0, to = {tasks} }}\n"
            ),
        )?;
        // Timed from the first provider joining: the floor, too, runs over a connection
        // already open. Each side is the better of two runs (this machine is noisy).
        let (mut gathering, mut wall) = (f64::INFINITY, 0.0);
        for _ in 0..2 {
            let (w, joined) = self.run_timed(&job, 2, None).await?;
            if w - joined < gathering {
                (gathering, wall) = (w - joined, w);
            }
        }
        let rate = tasks as f64 / gathering;
        // The floor: the same bytes as bare responses over the same transport, two at once
        // (one per provider).
        let floor = floors::bulk(tasks, 1 << 20, 2)
            .await?
            .max(floors::bulk(tasks, 1 << 20, 2).await?);
        Ok(vec![Figure {
            name: "1 MiB results gathered",
            value: format!("{rate:.0} MiB/s"),
            target: ">= 0.9x bare",
            baseline: format!("bare libp2p {floor:.0} MiB/s"),
            ratio: Some(rate / floor),
            raw: json!({"tasks": tasks, "gathering_seconds": gathering, "wall_seconds": wall, "mib_per_second": rate, "mib_per_second_with_startup": tasks as f64 / wall, "floor_mib_per_second": floor, "ray_mib_per_second": 172, "dask_mib_per_second": 116}),
        }])
    }

    async fn failover(&self) -> anyhow::Result<Vec<Figure>> {
        let tasks = if self.quick { 16 } else { 64 };
        // About 0.5 s per task with both providers busy.
        let job = self.job(
            "failover",
            &format!(
                "args = [\"pi\", \"{{seed}}\", \"140000000\"]\n[sweep]\nseed = {{ from = 0, to = {tasks} }}\n"
            ),
        )?;
        // The calm figure is the better of two runs: this machine is noisy.
        let calm = self
            .run(&job, 2, None)
            .await?
            .min(self.run(&job, 2, None).await?);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let killer = tokio::spawn(async move {
            let pids: crate::embedded::Pids = rx.await.ok()?;
            tokio::time::sleep(Duration::from_secs_f64(calm * 0.4)).await;
            let pid = pids.lock().ok()?.iter().flatten().next().copied()?;
            let ok = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .ok()?
                .success();
            ok.then_some(pid)
        });
        let stormy = self.run(&job, 2, Some(tx)).await?;
        let killed = killer
            .await
            .ok()
            .flatten()
            .context("no provider was killed")?;
        let extra = stormy - calm;
        Ok(vec![Figure {
            name: "provider SIGKILLed mid-job",
            value: format!("{extra:+.2} s"),
            target: "<= +0.5 s",
            baseline: "Ray +0.6 s, Dask +1.5 s".into(),
            ratio: None,
            raw: json!({"tasks": tasks, "calm_seconds": calm, "with_kill_seconds": stormy, "extra_seconds": extra, "killed_pid": killed}),
        }])
    }
}

impl Bench {
    /// The cost of verification: replication with free slots, adaptive replication once
    /// trust is earned, a SIGKILL with checkpoints, and the checkpoint call itself.
    async fn verify(&self) -> anyhow::Result<Vec<Figure>> {
        let mut figures = Vec::new();

        // Replicas with free slots. Providers run with --slowdown, so each task holds its
        // slot ~20x longer than it uses the CPU: like remote hosts, slots (not this
        // machine's 2 cores) are what is scarce, and doubling the providers doubles them.
        let tasks = if self.quick { 24 } else { 64 };
        let body = format!(
            "args = [\"spin\", \"10\"]\nstraggler_factor = 0\n[sweep]\ni = {{ from = 0, to = {tasks} }}\n"
        );
        let plain = self.job("plain", &body)?;
        let replicated = self.job(
            "replicated",
            &format!("{body}[verify]\nreplicas = 2\nquorum = 2\n"),
        )?;
        let slow = ["--slowdown", "20"];
        let t_plain = self
            .run_with(&plain, 4, None, &slow)
            .await?
            .summary
            .wall_seconds;
        let f = self.run_with(&replicated, 8, None, &slow).await?;
        anyhow::ensure!(
            f.summary.verification.verified == tasks,
            "not every task was verified"
        );
        let t_rep = f.summary.wall_seconds;
        let ratio = t_rep / t_plain;
        figures.push(Figure {
            name: "replicas = 2, free slots: wall time",
            value: format!("{ratio:.2}x of none"),
            target: "<= 1.05x",
            baseline: "BOINC: 2x (fixed quorum)".into(),
            ratio: None,
            raw: json!({"tasks": tasks, "plain_seconds": t_plain, "replicated_seconds": t_rep, "ratio": ratio}),
        });

        // Adaptive replication over a long job: total runs per task.
        let tasks = if self.quick { 1_000 } else { 4_000 };
        let job = self.job(
            "adaptive",
            &format!("args = [\"noop\"]\n[sweep]\ni = {{ from = 0, to = {tasks} }}\n[verify]\nadaptive = true\n"),
        )?;
        let f = self.run_with(&job, 2, None, &[]).await?;
        let v = &f.summary.verification;
        figures.push(Figure {
            name: "adaptive replication, total work",
            value: format!("{:.3}x ({} verified)", v.overhead, v.verified),
            target: "<= 1.2x",
            baseline: "replicas = 2: 2x".into(),
            ratio: None,
            raw: json!({"tasks": tasks, "runs": v.runs, "overhead": v.overhead, "verified": v.verified}),
        });

        // SIGKILL of the provider running a checkpointing task.
        let steps: u64 = if self.quick { 12_000_000 } else { 24_000_000 };
        let job = self.job(
            "ckpt",
            &format!(
                "args = [\"ckpt\", \"1\", \"{steps}\", \"20000\"]\ncheckpoint_interval = \"1s\"\nstraggler_factor = 0\n[limits]\nfuel = 2_000_000_000_000\n"
            ),
        )?;
        let calm = self
            .run_with(&job, 2, None, &[])
            .await?
            .summary
            .wall_seconds;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let killer = tokio::spawn(async move {
            let pids: crate::embedded::Pids = rx.await.ok()?;
            tokio::time::sleep(Duration::from_secs_f64(calm * 0.6)).await;
            let pids: Vec<u32> = pids.lock().ok()?.iter().flatten().copied().collect();
            // The busy one is the one using the CPU.
            let pid = pids.into_iter().max_by_key(|p| cpu_ticks(*p))?;
            let ok = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .ok()?
                .success();
            ok.then_some(pid)
        });
        let f = self.run_with(&job, 2, Some(tx), &[]).await?;
        killer
            .await
            .ok()
            .flatten()
            .context("no provider was killed")?;
        anyhow::ensure!(
            f.summary.checkpoints.resumed >= 1,
            "the task did not resume from a checkpoint"
        );
        let extra = f.summary.wall_seconds - calm;
        figures.push(Figure {
            name: "SIGKILL, checkpoints every 1 s",
            value: format!("{extra:+.2} s"),
            target: "<= +3 s (1 s unsaved)",
            baseline: "no checkpoint: +60% of task".into(),
            ratio: None,
            raw: json!({"calm_seconds": calm, "with_kill_seconds": f.summary.wall_seconds, "extra_seconds": extra, "task_seconds": calm}),
        });

        // The checkpoint call itself, 1 MiB of state: guest to host copy plus content hash.
        let (work, iters) = (
            self.dir.join("work-ckpt"),
            if self.quick { 100 } else { 400 },
        );
        let per = tokio::task::spawn_blocking(move || checkpoint_cost(work, 1 << 20, iters))
            .await
            .context("checkpoint benchmark thread panicked")??;
        let ms = per.as_secs_f64() * 1e3;
        figures.push(Figure {
            name: "checkpoint of 1 MiB state",
            value: format!("{ms:.2} ms"),
            target: "<= 5 ms",
            baseline: "CRIU dump: ~100 ms".into(),
            ratio: None,
            raw: json!({"bytes": 1 << 20, "iterations": iters, "ms_per_checkpoint": ms}),
        });
        Ok(figures)
    }
}

/// CPU time (user + system clock ticks) a process has used so far; 0 if it is gone.
/// A process's resident memory, in bytes (0 when it cannot be read).
pub(super) fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn cpu_ticks(pid: u32) -> u64 {
    naac_node::device::cpu_ticks_of(pid).unwrap_or(0)
}

/// Time per checkpoint of `bytes` taken `iters` times, minus the same calls with
/// checkpoints off. The sink hashes the state, as the requester does on arrival.
fn checkpoint_cost(work: PathBuf, bytes: usize, iters: u64) -> anyhow::Result<Duration> {
    let sandbox = Sandbox::start(SandboxConfig::new(work))?;
    let id = ContentId::of(TESTKIT);
    let module = sandbox.compile(&id, TESTKIT)?;
    let args = vec!["ckptbig".to_string(), bytes.to_string(), iters.to_string()];
    let run = |on: bool| -> anyhow::Result<Duration> {
        let sink = naac_sandbox::CheckpointSink::new(|state: Vec<u8>| {
            std::hint::black_box(ContentId::of(&state));
        });
        let t = TaskRun {
            argv0: "testkit".into(),
            env: Vec::new(),
            args: args.clone(),
            limits: Limits {
                fuel: u64::MAX / 4,
                memory: 64 << 20,
                timeout_ms: 600_000,
            },
            checkpoint_interval: on.then_some(Duration::ZERO),
            on_checkpoint: on.then_some(sink),
            ..TaskRun::default()
        };
        let t0 = Instant::now();
        let r = sandbox.run(&module, &t, &Arc::new(AtomicBool::new(false)))?;
        anyhow::ensure!(r.outcome == Outcome::Ok, "ckptbig failed: {}", r.message);
        anyhow::ensure!(
            !on || r.checkpoints as u64 == iters,
            "only {} checkpoints taken",
            r.checkpoints
        );
        Ok(t0.elapsed())
    };
    let off = run(false)?.min(run(false)?);
    let on = run(true)?.min(run(true)?);
    Ok(on.saturating_sub(off) / iters as u32)
}

/// Measures the round trip of one no-op task at a time: assign → run → result, taking the
/// result in the `Assign`'s answer as the requester does.
async fn round_trips(rounds: u32) -> anyhow::Result<Vec<Duration>> {
    let (client, mut events) = naac_net::start(
        Keypair::generate_ed25519(),
        naac_net::Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse::<Multiaddr>().expect("valid")],
            mdns: false,
            ..naac_net::Config::default()
        },
    )
    .await?;
    let addr = loop {
        if let Some(Event::Listening(_)) = events.recv().await
            && let Some(a) = client.listen_addrs().await.into_iter().next()
        {
            break a;
        }
    };
    let pool = Pool::start(1, 1, &addr, &[])?;
    let peer = loop {
        match events.recv().await {
            Some(Event::Connected(p, _)) => break p,
            Some(_) => {}
            None => anyhow::bail!("network stopped"),
        }
    };
    let module = ContentId::of(TESTKIT);
    let job = JobId([9; 16]);
    let mut samples = Vec::with_capacity(rounds as usize);
    // Round 0 warms up (module fetch and compile); it is not counted.
    for i in 0..=rounds {
        let req = Request::new(RequestBody::Assign(Assign {
            job,
            seq: u64::from(i) + 1,
            module,
            argv0: "testkit".into(),
            limits: Limits::default(),
            checkpoint_interval_ms: None,
            order: None,
            sources: Vec::new(),
            hold_over: None,
            holders: Vec::new(),
            inline: Vec::new(),
            reply_with_results: true,
            tasks: vec![TaskSpec {
                index: i,
                attempt: 1,
                args: vec!["noop".into()],
                stdin: None,
                inputs: Vec::new(),
                seed: module,
                resume: None,
                env: Vec::new(),
            }],
        }));
        let t0 = Instant::now();
        // Polled here, as the floor polls its request: the figure is the protocol's.
        let answer = client.request(peer, req);
        tokio::pin!(answer);
        // The result comes in the answer, or (past the provider's hold) in a report.
        let done = |r: &naac_proto::Report| -> anyhow::Result<bool> {
            let Some(res) = r.results.iter().find(|x| x.index == i) else {
                return Ok(false);
            };
            anyhow::ensure!(
                res.outcome == Some(Outcome::Ok),
                "no-op failed: {}",
                res.message
            );
            Ok(true)
        };
        let mut answered = false;
        loop {
            let ev = tokio::select! {
                a = &mut answer, if !answered => {
                    answered = true;
                    match a {
                        Ok(Response { body: ResponseBody::Report(r), .. }) if done(&r)? => break,
                        Ok(Response { body: ResponseBody::Ack | ResponseBody::Report(_), .. }) => continue,
                        other => anyhow::bail!("the provider did not take the task: {other:?}"),
                    }
                }
                ev = events.recv() => ev,
            };
            let Some(ev) = ev else {
                anyhow::bail!("network stopped")
            };
            let Event::Request {
                request, channel, ..
            } = ev
            else {
                continue;
            };
            match request.body {
                RequestBody::Fetch { id } if id == module => {
                    client
                        .respond(channel, Response::new(ResponseBody::Blob(TESTKIT.to_vec())))
                        .await;
                }
                RequestBody::Report(r) => {
                    client
                        .respond(channel, Response::new(ResponseBody::Ack))
                        .await;
                    if done(&r)? {
                        break;
                    }
                }
                _ => {
                    client
                        .respond(channel, Response::new(ResponseBody::NotFound))
                        .await;
                }
            }
        }
        if i > 0 {
            samples.push(t0.elapsed());
        }
    }
    pool.stop().await;
    Ok(samples)
}
