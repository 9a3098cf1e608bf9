//! Storage figures (`--only store`), on 9 storage hosts (`naac node --store --provide`, each
//! a process with its own data dir on 127.0.0.1) and this process as their user:
//!
//! - the erasure code alone (4-of-8 Reed-Solomon encode and decode, GB/s) and raw TCP over
//!   loopback (one stream, MiB/s): the floors put and get are measured against;
//! - put and get of one random file at 4-of-8 on 8 of the hosts (MiB/s of data);
//! - repair: one host SIGKILLed, its shard rebuilt from `k` others onto the ninth host;
//! - one audit round over every shard (what each shard gets about once a day): the hosts'
//!   and the auditor's CPU and the bytes the hosts sent, per GiB-day of data;
//! - a job of 8 tasks reading 8 inputs, from the store and then as local files the
//!   requester serves (input MiB/s, submit to results).

use super::{Bench, Figure, cpu_ticks};
use anyhow::Context as _;
use naac_node::store::{Catalog, audit, get, put};
use naac_store::Geometry;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `naac node --provide --slots 1` plus `role` on 127.0.0.1 with `policy`, joined to `join`:
/// the process and the address it listens on.
pub(super) fn spawn_host(
    home: &Path,
    join: Option<&str>,
    policy: &str,
    role: &[&str],
) -> anyhow::Result<(Child, String)> {
    std::fs::create_dir_all(home)?;
    std::fs::write(home.join("policy.toml"), policy)?;
    let mut c = Command::new(std::env::current_exe().context("find the naac binary")?);
    c.env("NAAC_HOME", home)
        .env_remove("RUST_LOG")
        .args(["node", "--provide", "--slots", "1", "--no-mdns", "--no-api"])
        .args(role)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
    if let Some(j) = join {
        c.args(["--join", j]);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start a host")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("host stdout")?).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected host output {line:?}"))?
        .to_string();
    Ok((child, addr))
}

/// A storage host, killed on drop.
struct Host {
    child: Child,
    addr: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Host {
    fn start(home: &Path, join: Option<&str>) -> anyhow::Result<Host> {
        let (child, addr) = spawn_host(home, join, "idle_only = false\n", &["--store"])?;
        Ok(Host { child, addr })
    }

    fn peer(&self) -> String {
        self.addr.rsplit('/').next().unwrap_or_default().to_string()
    }

    /// Bytes the process wrote through syscalls (sockets here: hosts write no disk in audits).
    fn wchar(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/io", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("wchar:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// `bytes` of xorshift noise in `path`.
fn random_file(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// One TCP stream over loopback carrying `bytes`: MiB/s.
fn raw_tcp(bytes: u64) -> anyhow::Result<f64> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(got);
            }
            got += n as u64;
        }
    });
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr)?;
    let buf = vec![7u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n])?;
        left -= n as u64;
    }
    drop(s);
    let got = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread"))??;
    anyhow::ensure!(got == bytes, "tcp carried {got} of {bytes} bytes");
    Ok(bytes as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64())
}

/// The erasure code alone on `bytes` of data at 4-of-8: (encode, decode from the 4 recovery
/// pieces) in GB/s of data.
fn erasure(bytes: u64) -> anyhow::Result<(f64, f64)> {
    let g = Geometry::new(4, 8, bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut coder = naac_store::erasure::Coder::new(g).map_err(|e| anyhow::anyhow!("{e}"))?;
    let stripe: Vec<u8> = (0..g.stripe_bytes()).map(|i| (i * 31 + 7) as u8).collect();
    let stripes = (bytes / g.stripe_bytes()).max(1);
    let t = Instant::now();
    let mut recovery = Vec::new();
    for _ in 0..stripes {
        recovery = coder.encode(&stripe).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let enc = (stripes * g.stripe_bytes()) as f64 / t.elapsed().as_secs_f64() / 1e9;
    // Every data piece lost: the stripe comes back from the recovery pieces alone.
    let mut pieces: Vec<Option<&[u8]>> = vec![None; 4];
    pieces.extend(recovery.iter().map(|r| Some(r.as_slice())));
    let t = Instant::now();
    for _ in 0..stripes {
        let back = coder.decode(&pieces).map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(back == stripe, "decoded stripe differs");
    }
    let dec = (stripes * g.stripe_bytes()) as f64 / t.elapsed().as_secs_f64() / 1e9;
    Ok((enc, dec))
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
}

impl Bench {
    pub(super) async fn store(&self) -> anyhow::Result<Vec<Figure>> {
        let data_bytes: u64 = if self.quick { 128 << 20 } else { 1 << 30 };
        let root = self.dir.join("store");
        std::fs::create_dir_all(&root)?;
        let (enc, dec) = tokio::task::spawn_blocking(move || erasure(256 << 20)).await??;
        let tcp = tokio::task::spawn_blocking(move || raw_tcp(2 << 30)).await??;
        // Nine hosts: eight take the shards, the ninth the repair.
        let first = Host::start(&root.join("host0"), None)?;
        let join = first.addr.clone();
        let mut hosts = vec![first];
        for i in 1..9 {
            hosts.push(Host::start(&root.join(format!("host{i}")), Some(&join))?);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let user_home = naac_node::Home::at(root.join("user"));
        user_home.ensure()?;
        let user = naac_net::load_or_create_identity(&user_home.user_identity())?;
        let (client, _events) = crate::reach::looking_node(&[join.parse()?], false).await?;
        let file = root.join("data.bin");
        random_file(&file, data_bytes)?;
        // 4-of-8 on eight of the nine hosts; the repair goes to the one left.
        let opts = put::PutOptions {
            k: 4,
            n: 8,
            happy: 8,
            days: 30,
            timeout: Duration::from_secs(600),
            discover: Duration::from_secs(2),
            max_price: None,
            private: false,
        };
        let t = Instant::now();
        let done = put::put(&client, &user_home, &user, &file, &opts, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let put_s = t.elapsed().as_secs_f64();
        let id = done.id;
        // Get it back, from another identity that only knows the id.
        let t = Instant::now();
        let opened = get::open(&client, &id, Vec::new(), Duration::from_secs(2), None).await?;
        let copy = root.join("copy.bin");
        get::get_to(&client, &opened, &copy, |_| {}).await?;
        let get_s = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            std::fs::metadata(&copy)?.len() == data_bytes,
            "the copy differs in length"
        );
        std::fs::remove_file(&copy)?;
        // One audit round over every shard: what each shard gets about once a day.
        let catalog = Catalog::open(&user_home.store_db())?;
        for row in catalog.shards(&id)? {
            catalog.record(
                &id,
                row.shard,
                &row.host,
                naac_store::audit::Verdict::Passed,
                0,
                0,
            )?;
        }
        let sent0: u64 = hosts.iter().map(Host::wchar).sum();
        let host_ticks0: u64 = hosts.iter().map(|h| cpu_ticks(h.child.id())).sum();
        let my_ticks0 = cpu_ticks(std::process::id());
        let cfg = audit::AuditConfig {
            every_ms: naac_store::DAY_MS,
            repair_at: None,
        };
        let mut seed = 7;
        let t = Instant::now();
        let round = audit::round(&client, &user_home, &user, &cfg, &mut seed).await?;
        let audit_s = t.elapsed().as_secs_f64();
        let sent = hosts.iter().map(Host::wchar).sum::<u64>() - sent0;
        // /proc counts CPU time in USER_HZ ticks, 100 a second.
        let tick = 100.0;
        let host_cpu = (hosts.iter().map(|h| cpu_ticks(h.child.id())).sum::<u64>() - host_ticks0)
            as f64
            / tick;
        let my_cpu = (cpu_ticks(std::process::id()) - my_ticks0) as f64 / tick;
        anyhow::ensure!(
            round.audited == 8 && round.passed == 8,
            "audit round: {round:?}"
        );
        let gib = data_bytes as f64 / (1u64 << 30) as f64;
        // Repair: SIGKILL the host of shard 0; its shard counts lost; time the rebuild.
        let rows = catalog.shards(&id)?;
        let victim = rows
            .iter()
            .find(|r| r.shard == 0)
            .context("shard 0 placed")?
            .host
            .clone();
        if let Some(i) = hosts.iter().position(|h| h.peer() == victim) {
            drop(hosts.remove(i));
        }
        catalog.record(&id, 0, &victim, naac_store::audit::Verdict::Lost, 1, 1)?;
        // Repair as soon as any shard is missing (the default waits for k + 2 healthy).
        let eager = audit::AuditConfig {
            repair_at: Some(8),
            ..cfg
        };
        let t = Instant::now();
        let rebuilt = audit::repair_one(&client, &user_home, &user, &catalog, &id, &eager).await?;
        let repair_s = t.elapsed().as_secs_f64();
        anyhow::ensure!(rebuilt == 1, "repair rebuilt {rebuilt} shards");
        let shard_bytes = Geometry::new(4, 8, data_bytes)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .shard_len();
        // Input fetch: 8 tasks, each reading one 32 MiB input (8 MiB quick), from the store
        // and then as local files the requester serves.
        // (Through a host still up: the one first joined may be the one killed.)
        let alive = hosts.first().context("a host left")?.addr.clone();
        let (store_in, local_in, input_bytes) = self.input_fetch(&root, &alive, &user_home).await?;
        drop(hosts);
        let put_rate = mib_s(data_bytes, put_s);
        let get_rate = mib_s(data_bytes, get_s);
        Ok(vec![
            Figure {
                name: "erasure code 4-of-8",
                value: format!("{enc:.2} / {dec:.2} GB/s"),
                target: "encode / decode",
                baseline: "-".into(),
                ratio: None,
                raw: json!({"encode_gb_per_second": enc, "decode_gb_per_second": dec}),
            },
            Figure {
                name: "store put, 8 hosts (loopback)",
                value: format!("{put_rate:.0} MiB/s"),
                target: "-",
                baseline: format!("raw TCP {tcp:.0} MiB/s"),
                ratio: Some(put_rate / tcp),
                raw: json!({"bytes": data_bytes, "seconds": put_s, "mib_per_second": put_rate, "tcp_mib_per_second": tcp}),
            },
            Figure {
                name: "store get, any 4 of 8",
                value: format!("{get_rate:.0} MiB/s"),
                target: "-",
                baseline: format!("raw TCP {tcp:.0} MiB/s"),
                ratio: Some(get_rate / tcp),
                raw: json!({"bytes": data_bytes, "seconds": get_s, "mib_per_second": get_rate}),
            },
            Figure {
                name: "repair of one lost host",
                value: format!("{repair_s:.1} s"),
                target: "-",
                baseline: format!(
                    "{} shard of {}",
                    naac_types::units::format_size(shard_bytes),
                    naac_types::units::format_size(data_bytes)
                ),
                ratio: None,
                raw: json!({"data_bytes": data_bytes, "shard_bytes": shard_bytes, "seconds": repair_s}),
            },
            Figure {
                name: "audit per GiB-day",
                value: format!(
                    "{:.2} CPU-s, {}",
                    (host_cpu + my_cpu) / gib,
                    naac_types::units::format_size((sent as f64 / gib) as u64)
                ),
                target: "-",
                baseline: format!("hosts {host_cpu:.2} s, auditor {my_cpu:.2} s"),
                ratio: None,
                raw: json!({"data_gib": gib, "shards": round.audited, "wall_seconds": audit_s,
                    "host_cpu_seconds": host_cpu, "auditor_cpu_seconds": my_cpu, "bytes_sent": sent}),
            },
            Figure {
                name: "job input fetch: store",
                value: format!("{store_in:.0} MiB/s"),
                target: "-",
                baseline: format!("from the requester {local_in:.0} MiB/s"),
                ratio: Some(store_in / local_in),
                raw: json!({"input_bytes": input_bytes, "store_mib_per_second": store_in, "requester_mib_per_second": local_in}),
            },
        ])
    }

    /// A job of 8 tasks each reading one input, first from the store and then from local
    /// files: input MiB/s (submit to results) each way, and the bytes read.
    async fn input_fetch(
        &self,
        root: &Path,
        join: &str,
        user_home: &naac_node::Home,
    ) -> anyhow::Result<(f64, f64, u64)> {
        let each: u64 = if self.quick { 8 << 20 } else { 32 << 20 };
        let parts = root.join("parts");
        std::fs::create_dir_all(&parts)?;
        for i in 0..8 {
            random_file(&parts.join(format!("part-{i}.bin")), each + i)?;
        }
        let exe = std::env::current_exe()?;
        let out = Command::new(&exe)
            .env("NAAC_HOME", user_home.root())
            .args([
                "store",
                "put",
                "--k",
                "4",
                "--n",
                "8",
                "--no-mdns",
                "--join",
                join,
            ])
            .arg(&parts)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "put parts: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        std::fs::copy(self.dir.join("testkit.wasm"), root.join("testkit.wasm"))?;
        let run = |name: &str, input: String| -> anyhow::Result<f64> {
            let job = root.join(format!("{name}.toml"));
            std::fs::write(
                &job,
                format!(
                    "name = \"{name}\"\nmodule = \"testkit.wasm\"\nargs = [\"readin\", \"part-{{i}}.bin\"]\ninputs = [\"{input}\"]\n[sweep]\ni = [0, 1, 2, 3, 4, 5, 6, 7]\n"
                ),
            )?;
            let out = Command::new(&exe)
                .env("NAAC_HOME", user_home.root())
                .arg("run")
                .arg(&job)
                .args(["--json", "--no-mdns", "--join", join, "--out"])
                .arg(root.join(format!("out-{name}")))
                .output()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            anyhow::ensure!(
                out.status.success() && v["tasks"]["succeeded"] == 8,
                "{name}: {v} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            v["wall_seconds"].as_f64().context("wall_seconds")
        };
        let total: u64 = (0..8).map(|i| each + i).sum();
        let store_s = run("from-store", format!("{id}/part-{{i}}.bin"))?;
        let local_s = run(
            "from-requester",
            format!("{}/part-{{i}}.bin", parts.display()),
        )?;
        Ok((mib_s(total, store_s), mib_s(total, local_s), total))
    }
}
