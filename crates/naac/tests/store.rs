//! Storage across untrusted hosts, end to end over real `naac` processes on 127.0.0.1: each
//! storage host is `naac node --store` with a data dir of its own; the user's data dir puts,
//! gets and audits; private data is read only with its owner's data token.

mod common;

use common::{naac, spawn_node};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

struct Host {
    child: Child,
    addr: String,
    home: PathBuf,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn host(root: &Path, i: usize, join: Option<&str>, extra: &[&str]) -> Host {
    let home = root.join(format!("host{i}"));
    std::fs::create_dir_all(&home).expect("host dir");
    // Not paused for an owner at the keyboard (a paused host defers whole-shard proofs).
    if !home.join("policy.toml").exists() {
        std::fs::write(home.join("policy.toml"), "idle_only = false\n").expect("policy");
    }
    let mut c = naac();
    c.env("NAAC_HOME", &home).args([
        "node",
        "--store",
        "--no-mdns",
        "--no-api",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    if let Some(j) = join {
        c.args(["--join", j]);
    }
    c.args(extra);
    let (child, addr) = spawn_node(c);
    Host { child, addr, home }
}

fn pool(root: &Path, n: usize) -> Vec<Host> {
    pool_with(root, n, &[])
}

/// `n` hosts with `extra` flags (e.g. `--provide`), each joined to the first.
fn pool_with(root: &Path, n: usize, extra: &[&str]) -> Vec<Host> {
    let first = host(root, 0, None, extra);
    let join = first.addr.clone();
    let mut hosts = vec![first];
    for i in 1..n {
        hosts.push(host(root, i, Some(&join), extra));
    }
    // Each host's DHT record reaches the first one.
    std::thread::sleep(Duration::from_millis(1500));
    hosts
}

fn user(root: &Path, name: &str) -> Command {
    let home = root.join(name);
    std::fs::create_dir_all(&home).expect("user dir");
    let mut c = naac();
    c.env("NAAC_HOME", home).current_dir(root);
    c
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A directory of random files: a large one, small ones, an empty file and an empty dir.
fn random_tree(dir: &Path, big: usize) {
    std::fs::create_dir_all(dir.join("sub/deeper")).expect("dirs");
    std::fs::create_dir_all(dir.join("empty")).expect("dirs");
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    std::fs::write(dir.join("big.bin"), bytes(big)).expect("write");
    for i in 0..20 {
        std::fs::write(dir.join(format!("sub/part-{i}.bin")), bytes(1000 + i * 777)).expect("w");
    }
    std::fs::write(dir.join("sub/deeper/note.txt"), b"hello store\n").expect("w");
    std::fs::write(dir.join("zero"), b"").expect("w");
}

fn same_tree(a: &Path, b: &Path) {
    let o = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .expect("diff");
    assert!(
        o.status.success(),
        "trees differ: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(b.join("empty").is_dir());
}

fn status(root: &Path, id: &str) -> serde_json::Value {
    let out = ok(user(root, "alice")
        .args(["store", "status", id, "--json"])
        .output()
        .expect("status"));
    serde_json::from_str(&out).expect("status json")
}

#[test]
fn any_four_of_eight_hosts_return_identical_bytes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let mut hosts = pool(root, 8);
    random_tree(&root.join("data"), 100 << 20);
    let out = ok(user(root, "alice")
        .args([
            "store",
            "put",
            "data",
            "--k",
            "4",
            "--n",
            "8",
            "--json",
            "--no-mdns",
        ])
        .args(["--join", &hosts[0].addr])
        .output()
        .expect("put"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("put json");
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!(v["placed"].as_array().expect("placed").len(), 8, "{v}");
    // Every shard on its own host.
    let mut holders: Vec<&str> = v["placed"]
        .as_array()
        .expect("placed")
        .iter()
        .map(|p| p["host"].as_str().expect("host"))
        .collect();
    holders.sort();
    holders.dedup();
    assert_eq!(holders.len(), 8);
    // SIGKILL four hosts (not the one the reader joins through), then read from a data dir
    // that never saw the upload: the DHT finds the rest.
    for h in hosts.iter_mut().skip(4) {
        h.child.kill().expect("kill");
        h.child.wait().expect("wait");
    }
    let started = Instant::now();
    ok(user(root, "bob")
        .args(["store", "get", &id, "-o", "copy", "--no-mdns"])
        .args(["--join", &hosts[0].addr])
        .output()
        .expect("get"));
    same_tree(&root.join("data"), &root.join("copy"));
    eprintln!("get with 4 of 8 hosts: {:?}", started.elapsed());
    // One file of the directory, by path.
    ok(user(root, "bob")
        .args([
            "store",
            "get",
            &format!("{id}/sub/deeper/note.txt"),
            "-o",
            "note.txt",
        ])
        .args(["--no-mdns", "--join", &hosts[0].addr])
        .output()
        .expect("get file"));
    assert_eq!(
        std::fs::read(root.join("note.txt")).expect("note"),
        b"hello store\n"
    );
}

#[test]
fn a_flipped_byte_fails_the_next_audit_and_repair_restores_health() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let hosts = pool(root, 6);
    random_tree(&root.join("data"), 2 << 20);
    let id = put_2_of_4(root, &hosts[0].addr);
    // Flip one byte of one data shard (read first by every get) on its host's disk.
    let shard_file = shard_files(&hosts)
        .into_iter()
        .find(|p| {
            p.extension().is_some_and(|x| x == "data") && p.file_stem().is_some_and(|s| s == "0")
        })
        .expect("shard 0 on disk");
    let mut bytes = std::fs::read(&shard_file).expect("read shard");
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&shard_file, &bytes).expect("write shard");
    let flipped: u16 = shard_file
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("shard index");
    // The owner's own read meets the bad byte: a failed audit for the host that sent it,
    // and the read still succeeds from another shard.
    ok(user(root, "alice")
        .args(["store", "get", &id, "-o", "first-copy", "--no-mdns"])
        .args(["--join", &hosts[0].addr])
        .output()
        .expect("get"));
    same_tree(&root.join("data"), &root.join("first-copy"));
    let s = status(root, &id);
    assert_eq!(
        s["shards"][usize::from(flipped)]["last_audit"],
        "corrupt",
        "{s}"
    );
    // The user's node audits every shard about every second.
    let mut daemon = auditor(root, "alice", &hosts[0].addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    let repaired = loop {
        let s = status(root, &id);
        let moved = s["shards"][usize::from(flipped)]["host"].as_str()
            != Some(&shard_owner(&hosts, &shard_file));
        if s["healthy"] == 4 && moved && !s["events"].as_array().expect("events").is_empty() {
            break s;
        }
        assert!(Instant::now() < deadline, "no repair: {s}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    let what = repaired["events"][0]["what"].as_str().expect("event");
    assert!(what.contains("rebuilt 1"), "{what}");
    // The rebuilt data reads back whole, from a fresh data dir.
    ok(user(root, "carol")
        .args(["store", "get", &id, "-o", "copy", "--no-mdns"])
        .args(["--join", &hosts[1].addr])
        .output()
        .expect("get"));
    same_tree(&root.join("data"), &root.join("copy"));
}

/// Every shard file (`<index>.data`) on the hosts' disks.
fn shard_files(hosts: &[Host]) -> Vec<PathBuf> {
    hosts
        .iter()
        .flat_map(|h| {
            std::fs::read_dir(h.home.join("store/shards"))
                .into_iter()
                .flatten()
                .flatten()
                .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "data"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `who`'s node, auditing what it stored (or adopted) every second, through `join`.
fn auditor(root: &Path, who: &str, join: &str) -> Child {
    user(root, who)
        .args([
            "node",
            "--audit-every",
            "1s",
            "--no-mdns",
            "--api",
            "127.0.0.1:0",
        ])
        .args(["--join", join])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon")
}

/// The peer id of the host whose data dir holds `file`.
fn shard_owner(hosts: &[Host], file: &Path) -> String {
    let h = hosts
        .iter()
        .find(|h| file.starts_with(&h.home))
        .expect("owner");
    h.addr.rsplit('/').next().expect("peer id").to_string()
}

/// A bank node whose faucet gives each new account 10,000 credits.
fn bank(root: &Path) -> Host {
    let home = root.join("bank");
    std::fs::create_dir_all(&home).expect("bank dir");
    let mut c = naac();
    c.env("NAAC_HOME", &home).args([
        "node",
        "--bank",
        "--faucet",
        "10000",
        "--no-mdns",
        "--no-api",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    let (child, addr) = spawn_node(c);
    Host { child, addr, home }
}

/// An account's balance at `bank` in µcredits (`who`: "user" or a peer id).
fn balance(root: &Path, bank: &Host, who: &str) -> u64 {
    let out = ok(user(root, "alice")
        .args([
            "wallet",
            "balance",
            "--bank",
            &bank.addr,
            "--account",
            who,
            "--json",
        ])
        .output()
        .expect("balance"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("balance json");
    v["micro_credits"].as_u64().expect("micro_credits")
}

fn peer_of(h: &Host) -> String {
    h.addr.rsplit('/').next().expect("peer id").to_string()
}

#[test]
fn a_host_answering_garbage_fails_its_audits_and_loses_its_shard_and_pay() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let bank = bank(root);
    // Hosts paid at the bank, asking a high price so a second's storage is worth paying.
    let paid = ["--paid-at", &bank.addr, "--store-price", "1000000"];
    let liar_args: Vec<&str> = paid.iter().copied().chain(["--store-garbage"]).collect();
    let first = host(root, 0, None, &liar_args);
    let join = first.addr.clone();
    let liar = peer_of(&first);
    let mut hosts = vec![first];
    for i in 1..4 {
        hosts.push(host(root, i, Some(&join), &paid));
    }
    std::thread::sleep(Duration::from_millis(1500));
    random_tree(&root.join("data"), 1 << 20);
    // Priced hosts take nothing unpaid, and say so.
    let o = user(root, "alice")
        .args(["store", "put", "data", "--k", "2", "--n", "4"])
        .args(["--no-mdns", "--join", &join])
        .output()
        .expect("put");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pay with --bank ADDR"), "{err}");
    // 2-of-4 on four hosts, paid: the liar holds a shard.
    let id = ok(user(root, "alice")
        .args([
            "store", "put", "data", "--k", "2", "--n", "4", "--happy", "4", "--days", "1",
        ])
        .args(["--bank", &bank.addr, "--no-mdns", "--join", &join])
        .output()
        .expect("put"))
    .trim()
    .to_string();
    let granted = 10_000_000_000u64;
    let escrowed = granted - balance(root, &bank, "user");
    assert!(escrowed > 0, "nothing escrowed");
    let s = status(root, &id);
    assert!(
        s["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .any(|x| x["host"].as_str() == Some(&liar)),
        "{s}"
    );
    // A fifth host for the repair to move the liar's shard to.
    hosts.push(host(root, 4, Some(&join), &paid));
    std::thread::sleep(Duration::from_millis(1500));
    let mut daemon = auditor(root, "alice", &hosts[1].addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(root, &id);
        let still = s["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .any(|x| x["host"].as_str() == Some(&liar));
        let paid_hosts = s["cost"]["by_host"]
            .as_array()
            .expect("by_host")
            .iter()
            .filter(|h| h["paid"].as_str().is_some_and(|p| p != "0"))
            .count();
        if !still && s["healthy"] == 4 && paid_hosts >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the liar kept its shard, or honest hosts went unpaid: {s}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    // The liar earned nothing; the honest hosts earned what their passed audits were worth.
    assert_eq!(balance(root, &bank, &liar), 0);
    let earned: u64 = hosts[1..]
        .iter()
        .map(|h| balance(root, &bank, &peer_of(h)))
        .sum();
    assert!(earned > 0);
    // Removing the data refunds the rest of the escrow: only what hosts earned is spent.
    let o = user(root, "alice")
        .args(["store", "rm", &id, "--no-mdns", "--join", &hosts[1].addr])
        .output()
        .expect("rm");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refunded"));
    let earned: u64 = hosts
        .iter()
        .map(|h| balance(root, &bank, &peer_of(h)))
        .sum();
    assert_eq!(balance(root, &bank, "user"), granted - earned);
    assert!(earned < escrowed);
}

#[test]
fn too_few_hosts_fail_fast_naming_each_and_why() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    // One host whose owner allows 1 MiB of storage, one whose owner keeps more disk free
    // than there is, one ordinary host.
    let small = root.join("host0");
    std::fs::create_dir_all(&small).expect("dir");
    std::fs::write(small.join("policy.toml"), "storage_quota = \"1MiB\"\n").expect("policy");
    let tight = root.join("host2");
    std::fs::create_dir_all(&tight).expect("dir");
    std::fs::write(
        tight.join("policy.toml"),
        "idle_only = false\nmin_free_disk = \"1000000TiB\"\n",
    )
    .expect("policy");
    let first = host(root, 0, None, &[]);
    let second = host(root, 1, Some(&first.addr), &[]);
    let third = host(root, 2, Some(&first.addr), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    random_tree(&root.join("data"), 8 << 20);
    let started = Instant::now();
    let o = user(root, "alice")
        .args(["store", "put", "data", "--k", "2", "--n", "4", "--no-mdns"])
        .args(["--join", &first.addr])
        .output()
        .expect("put");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(err.contains("must (\"happy\")"), "{err}");
    assert!(err.contains("a shard is"), "{err}");
    let small_id = first.addr.rsplit('/').next().expect("id");
    assert!(err.contains(small_id), "{err}");
    let tight_line = err
        .lines()
        .find(|l| l.contains(&peer_of(&third)))
        .unwrap_or_else(|| panic!("the tight host is not named: {err}"));
    assert!(tight_line.contains("min_free_disk"), "{err}");
    drop(second);
}

/// The checksum testkit's `readin` prints beside the length.
fn checksum(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0u32, |s, b| s.wrapping_add(u32::from(*b)))
}

/// `dir` with `n` input files `part-{i}.bin` of `base + i * step` bytes and the testkit
/// module; each part's length and checksum (what the testkit's `readin` prints).
fn write_parts(dir: &Path, n: usize, base: usize, step: usize) -> Vec<(usize, u32)> {
    std::fs::create_dir_all(dir).expect("parts");
    let sizes = (0..n)
        .map(|i| {
            let bytes: Vec<u8> = (0..base + i * step).map(|j| (j * 7 + i) as u8).collect();
            std::fs::write(dir.join(format!("part-{i}.bin")), &bytes).expect("part");
            (bytes.len(), checksum(&bytes))
        })
        .collect();
    std::fs::copy(
        common::examples().join("testkit/testkit.wasm"),
        dir.join("testkit.wasm"),
    )
    .expect("module");
    sizes
}

/// `who` runs `root/job.toml` into `root/out` with `extra` flags; it must succeed, each task
/// printing its part's length and checksum (`sizes`). Its summary.
fn run_parts_job(
    root: &Path,
    who: &str,
    extra: &[&str],
    sizes: &[(usize, u32)],
) -> serde_json::Value {
    let o = user(root, who)
        .args(["run", "job.toml", "--json", "--out", "out", "--no-mdns"])
        .args(extra)
        .output()
        .expect("run");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert!(
        o.status.success(),
        "{summary}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(summary["tasks"]["succeeded"], sizes.len(), "{summary}");
    for (i, (len, sum)) in sizes.iter().enumerate() {
        let out =
            std::fs::read_to_string(root.join(format!("out/tasks/{i}/stdout"))).expect("stdout");
        assert_eq!(out.trim(), format!("{len} {sum}"), "task {i}");
    }
    summary
}

#[test]
fn a_job_reads_its_naac_module_and_inputs_from_storage_hosts_not_from_its_requester() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    // Four machines that lend disk and run tasks.
    let hosts = pool_with(root, 4, &["--provide", "--slots", "1"]);
    let join = hosts[0].addr.clone();
    let parts = root.join("parts");
    let sizes = write_parts(&parts, 4, 150_000, 40_000);
    let id = ok(user(root, "alice")
        .args(["store", "put", "parts", "--k", "2", "--n", "4", "--no-mdns"])
        .args(["--join", &join])
        .output()
        .expect("put"))
    .trim()
    .to_string();
    // `naac pool`: each host runs tasks and lends disk; it shows what it holds.
    let pool: serde_json::Value = serde_json::from_str(&ok(user(root, "alice")
        .args(["pool", "--json", "--no-mdns", "--join", &join])
        .output()
        .expect("pool")))
    .expect("pool json");
    assert_eq!(pool["totals"]["store_hosts"], 4, "{pool:#}");
    let hosts = pool["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 4, "{pool:#}");
    assert!(hosts.iter().all(|h| h["store"]["shards"] == 1), "{pool:#}");
    std::fs::copy(
        common::examples().join("testkit/testkit.wasm"),
        root.join("testkit.wasm"),
    )
    .expect("module");
    std::fs::write(
        root.join("job.toml"),
        format!(
            "name = \"stored\"\nmodule = \"{id}/testkit.wasm\"\nargs = [\"readin\", \"part-{{i}}.bin\"]\ninputs = [\"{id}/part-{{i}}.bin\"]\n[sweep]\ni = [0, 1, 2, 3]\n[output]\nstore = true\n"
        ),
    )
    .expect("job");
    let summary = run_parts_job(root, "alice", &["--join", &join], &sizes);
    // No blob passed through the requester: providers read module and inputs from the hosts.
    let served = &summary["served"];
    assert_eq!(served["stored_inputs"], 4, "{summary}");
    assert_eq!(served["blobs"], 0, "{summary}");
    assert_eq!(served["bytes"], 0, "{summary}");
    // `[output] store = true`: the results are in the store too, each task's under its index.
    let kept = summary["store"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("results id: {summary}"))
        .to_string();
    ok(user(root, "bob")
        .args([
            "store",
            "get",
            &format!("{kept}/2/stdout"),
            "-o",
            "task2.txt",
        ])
        .args(["--no-mdns", "--join", &join])
        .output()
        .expect("get"));
    assert_eq!(
        std::fs::read(root.join("task2.txt")).expect("got"),
        std::fs::read(root.join("out/tasks/2/stdout")).expect("local")
    );
    // A file the data does not hold is refused up front, naming it.
    std::fs::write(
        root.join("bad.toml"),
        format!("name = \"bad\"\nmodule = \"testkit.wasm\"\nargs = [\"noop\"]\ninputs = [\"{id}/nope.bin\"]\n"),
    )
    .expect("job");
    let o = user(root, "alice")
        .args(["run", "bad.toml", "--out", "out-bad", "--no-mdns"])
        .args(["--join", &join])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("holds no file \"nope.bin\""), "{err}");
}

/// `naac node` as alice's requester daemon, its API on `api`, joined to `join`.
fn daemon(root: &Path, api: &str, join: &str) -> Host {
    use std::io::BufRead as _;
    let mut child = user(root, "alice")
        .args(["node", "--no-mdns", "--api", api, "--join", join])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("daemon");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), format!("api on http://{api}"));
    Host {
        child,
        addr: api.to_string(),
        home: root.join("alice"),
    }
}

#[test]
fn a_requester_killed_mid_job_resumes_from_the_checkpoint_it_kept_in_the_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let hosts = pool_with(root, 4, &["--provide", "--slots", "1"]);
    let join = hosts[0].addr.clone();
    std::fs::copy(
        common::examples().join("testkit/testkit.wasm"),
        root.join("testkit.wasm"),
    )
    .expect("module");
    // One SHA-256 chain of ~10 s, checkpointing every second, its checkpoints in the store.
    let (seed, steps) = (11u64, 35_000_000u64);
    std::fs::write(
        root.join("chain.toml"),
        format!(
            "name = \"chain\"\nmodule = \"testkit.wasm\"\nargs = [\"ckpt\", \"{seed}\", \"{steps}\", \"20000\"]\ncheckpoint_interval = \"1s\"\nstraggler_factor = 0\n[limits]\nfuel = 2_000_000_000_000\n[output]\nstore = true\n"
        ),
    )
    .expect("job");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let api = format!("127.0.0.1:{port}");
    let mut d = daemon(root, &api, &join);
    let out = ok(user(root, "alice")
        .args(["submit", "chain.toml", "--json", "--api", &api])
        .output()
        .expect("submit"));
    let id = serde_json::from_str::<serde_json::Value>(&out).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Once a checkpoint is in the store, SIGKILL the requester: nothing in its memory lives.
    let noted = root
        .join("alice/jobs")
        .join(&id)
        .join("out/checkpoints.jsonl");
    let t = Instant::now();
    while std::fs::read_to_string(&noted).map_or(0, |s| s.lines().count()) < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no checkpoint was stored"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = d.child.kill();
    let _ = d.child.wait();
    let _d = daemon(root, &api, &join);
    let out = user(root, "alice")
        .args(["status", &id, "--watch", "--json", "--api", &api])
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["state"], "done", "{v:#}");
    let dir = root.join("alice/jobs").join(&id).join("out");
    // The same bytes as an uninterrupted run, resumed from the stored checkpoint.
    let want = naac_guest::hex(&naac_guest::kernels::sha256_chain(seed, steps));
    let got = std::fs::read_to_string(dir.join("tasks/0/stdout")).expect("stdout");
    assert_eq!(got.trim(), want);
    let err = std::fs::read_to_string(dir.join("tasks/0/stderr")).expect("stderr");
    assert!(err.contains("resumed at step"), "stderr: {err}");
    assert!(
        v["summary"]["checkpoints"]["resumed"].as_u64() >= Some(1),
        "{v:#}"
    );
    // Done with: its checkpoints left the store.
    assert!(!noted.exists());
}

#[test]
fn a_paused_host_answers_cheap_audits_unless_its_owner_forbids_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    // Host 1's owner lets it serve no storage while paused.
    std::fs::create_dir_all(root.join("host1")).expect("dir");
    std::fs::write(
        root.join("host1/policy.toml"),
        "idle_only = false\nstore_when_paused = false\n",
    )
    .expect("policy");
    let first = host(root, 0, None, &[]);
    let join = first.addr.clone();
    let hosts = [
        first,
        host(root, 1, Some(&join), &[]),
        host(root, 2, Some(&join), &[]),
    ];
    std::thread::sleep(Duration::from_millis(1500));
    random_tree(&root.join("data"), 64 << 10);
    let id = ok(user(root, "alice")
        .args([
            "store", "put", "data", "--k", "1", "--n", "3", "--happy", "3",
        ])
        .args(["--no-mdns", "--join", &join])
        .output()
        .expect("put"))
    .trim()
    .to_string();
    // `naac pool` shows the disk each host lends and what it holds.
    let pool: serde_json::Value = serde_json::from_str(&ok(user(root, "alice")
        .args(["pool", "--json", "--no-mdns", "--join", &join])
        .output()
        .expect("pool")))
    .expect("pool json");
    assert_eq!(pool["totals"]["store_hosts"], 3, "{pool:#}");
    assert!(pool["totals"]["store_used"].as_u64() > Some(0), "{pool:#}");
    // Storage-only nodes run no tasks: they are listed apart from the compute hosts.
    let only = pool["storage_only"].as_array().expect("storage_only");
    assert_eq!(only.len(), 3, "{pool:#}");
    for h in only {
        assert_eq!(h["shards"], 1, "{h:#}");
    }
    // Both owners pause their machines.
    for h in &hosts[..2] {
        let o = naac()
            .env("NAAC_HOME", &h.home)
            .arg("pause")
            .output()
            .expect("pause");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let mut daemon = auditor(root, "alice", &hosts[2].addr);
    let verdict = |s: &serde_json::Value, h: &Host| -> (u64, Option<String>) {
        let peer = peer_of(h);
        let shard = s["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .find(|x| x["host"].as_str() == Some(&peer))
            .cloned()
            .unwrap_or_default();
        (
            shard["audits"].as_u64().unwrap_or(0),
            shard["last_audit"].as_str().map(str::to_string),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let s = loop {
        let s = status(root, &id);
        if verdict(&s, &hosts[0]).0 >= 2 && verdict(&s, &hosts[1]).0 >= 2 {
            break s;
        }
        assert!(Instant::now() < deadline, "too few audits: {s}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    // Paused with the default, a host still passes (chunk audits; the disk pass waits).
    assert_eq!(verdict(&s, &hosts[0]).1.as_deref(), Some("passed"), "{s}");
    // Forbidden to serve while paused: a miss (offline), not a loss.
    assert_eq!(verdict(&s, &hosts[1]).1.as_deref(), Some("offline"), "{s}");
}

#[test]
fn a_delegate_audits_and_repairs_data_it_was_handed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let hosts = pool(root, 5);
    random_tree(&root.join("data"), 1 << 20);
    let id = put_2_of_4(root, &hosts[0].addr);
    ok(user(root, "alice")
        .args(["store", "delegate", &id, "-o", "bundle.json"])
        .output()
        .expect("delegate"));
    // A bundle whose signatures are not the owner's is refused.
    let text = std::fs::read_to_string(root.join("bundle.json")).expect("bundle");
    let mut forged: serde_json::Value = serde_json::from_str(&text).expect("json");
    forged["shards"][0]["challenges"][0]["sig"] = "00".repeat(64).into();
    std::fs::write(root.join("forged.json"), forged.to_string()).expect("write");
    let o = user(root, "mallory")
        .args(["store", "adopt", "forged.json"])
        .output()
        .expect("adopt");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not signed by the data's owner"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(user(root, "carol")
        .args(["store", "adopt", "bundle.json"])
        .output()
        .expect("adopt"));
    // One byte of one shard flips; carol's node, not alice's, finds it and repairs it.
    let shard_file = shard_files(&hosts)
        .into_iter()
        .find(|p| p.extension().is_some_and(|x| x == "data"))
        .expect("a shard on disk");
    let mut bytes = std::fs::read(&shard_file).expect("read shard");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x80;
    std::fs::write(&shard_file, &bytes).expect("write shard");
    let flipped: usize = shard_file
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("shard index");
    let owner_of_flipped = shard_owner(&hosts, &shard_file);
    let mut daemon = auditor(root, "carol", &hosts[0].addr);
    let carol_status = || -> serde_json::Value {
        let out = ok(user(root, "carol")
            .args(["store", "status", &id, "--json"])
            .output()
            .expect("status"));
        serde_json::from_str(&out).expect("status json")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = carol_status();
        let moved = s["shards"][flipped]["host"].as_str() != Some(&owner_of_flipped);
        if s["healthy"] == 4 && moved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the delegate did not repair: {s}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    // The data reads back whole.
    ok(user(root, "dave")
        .args(["store", "get", &id, "-o", "copy", "--no-mdns"])
        .args(["--join", &hosts[1].addr])
        .output()
        .expect("get"));
    same_tree(&root.join("data"), &root.join("copy"));
}

/// Private data: hosts serve it only to its owner and to holders of her data token, each
/// token only for the ids it names; a job reads private inputs (and module) through the
/// providers the token is handed on to, never through its requester; a revoked token is
/// refused within seconds.
#[test]
fn private_data_is_read_only_with_a_token_for_its_id() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let hosts = pool_with(root, 4, &["--provide", "--slots", "1"]);
    let join = hosts[0].addr.clone();
    let parts = root.join("parts");
    let sizes = write_parts(&parts, 2, 90_000, 30_000);
    std::fs::create_dir_all(root.join("diary")).expect("diary");
    std::fs::write(root.join("diary/today.txt"), b"dear diary\n").expect("diary");
    let put = |dir: &str| {
        ok(user(root, "alice")
            .args(["store", "put", dir, "--k", "2", "--n", "4", "--private"])
            .args(["--no-mdns", "--join", &join])
            .output()
            .expect("put"))
        .trim()
        .to_string()
    };
    let (id, diary) = (put("parts"), put("diary"));
    let get = |who: &str, url: &str, out: &str, token: Option<&str>| {
        let mut c = user(root, who);
        c.args(["store", "get", url, "-o", out, "--no-mdns", "--join", &join]);
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        c.output().expect("get")
    };
    // Bob has the id and no token.
    let o = get("bob", &id, "nope", None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is private"), "{err}");
    // Alice reads her own without one.
    ok(get("alice", &format!("{id}/part-1.bin"), "mine.bin", None));
    assert_eq!(
        std::fs::read(root.join("mine.bin")).expect("mine"),
        std::fs::read(parts.join("part-1.bin")).expect("part")
    );
    // A token for the parts, for bob.
    let bob = common::user_id(&root.join("bob"));
    let token = ok(user(root, "alice")
        .args(["token", "mint", "data", "--to", &bob, "--data", &id])
        .output()
        .expect("mint"));
    std::fs::write(root.join("bob.token"), token.trim()).expect("token");
    ok(get("bob", &id, "copy", Some("bob.token")));
    let o = Command::new("diff")
        .arg("-r")
        .arg(&parts)
        .arg(root.join("copy"))
        .output()
        .expect("diff");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // The same token does not open the diary.
    let o = get("bob", &diary, "diary-copy", Some("bob.token"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("does not let you read"), "{err}");
    assert!(!root.join("diary-copy").exists());
    // Bob's job over alice's private module and inputs: providers are handed the token and
    // read from the storage hosts; without it the job is refused up front.
    std::fs::write(
        root.join("job.toml"),
        format!(
            "name = \"private\"\nmodule = \"{id}/testkit.wasm\"\nargs = [\"readin\", \"part-{{i}}.bin\"]\ninputs = [\"{id}/part-{{i}}.bin\"]\n[sweep]\ni = [0, 1]\n"
        ),
    )
    .expect("job");
    let o = user(root, "bob")
        .args([
            "run",
            "job.toml",
            "--out",
            "out-none",
            "--no-mdns",
            "--join",
            &join,
        ])
        .output()
        .expect("run");
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary = run_parts_job(
        root,
        "bob",
        &["--join", &join, "--data-token", "bob.token"],
        &sizes,
    );
    assert_eq!(summary["served"]["blobs"], 0, "{summary}");
    // Alice revokes bob's token: the hosts refuse it within seconds.
    ok(user(root, "alice")
        .args([
            "token",
            "revoke",
            "bob.token",
            "--block",
            "0",
            "--linger",
            "1s",
        ])
        .args(["--no-mdns", "--join", &join])
        .output()
        .expect("revoke"));
    let revoked_at = Instant::now();
    loop {
        let o = get(
            "bob",
            &format!("{id}/part-0.bin"),
            "late.bin",
            Some("bob.token"),
        );
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("revoked"), "{err}");
            break;
        }
        let _ = std::fs::remove_file(root.join("late.bin"));
        assert!(
            revoked_at.elapsed() < Duration::from_secs(10),
            "still served"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("revocation refused after {:?}", revoked_at.elapsed());
}

/// Through its owner's node (`--via`), a data token is checked with its exact path: bob
/// reads the files under the prefix alice let him read and no other, writes only under the
/// prefix she let him write, and what he writes is alice's (private to her); eve cannot use
/// bob's token.
#[test]
fn a_data_token_reads_and_writes_exact_paths_through_its_owners_node() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let hosts = pool(root, 4);
    let join = hosts[0].addr.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let api = format!("127.0.0.1:{port}");
    let _d = daemon(root, &api, &join);
    std::fs::create_dir_all(root.join("data/pub")).expect("dirs");
    std::fs::create_dir_all(root.join("data/secret")).expect("dirs");
    std::fs::write(root.join("data/pub/a.txt"), b"for bob\n").expect("a");
    std::fs::write(root.join("data/secret/b.txt"), b"not for bob\n").expect("b");
    let id = ok(user(root, "alice")
        .args(["store", "put", "data", "--k", "2", "--n", "4", "--private"])
        .args(["--no-mdns", "--join", &join])
        .output()
        .expect("put"))
    .trim()
    .to_string();
    let bob = common::user_id(&root.join("bob"));
    let mint = |args: &[&str], file: &str| {
        let t = ok(user(root, "alice")
            .args(["token", "mint", "data", "--to", &bob])
            .args(args)
            .output()
            .expect("mint"));
        std::fs::write(root.join(file), t.trim()).expect("token");
    };
    mint(&["--data", &id, "--path-prefix", "pub/"], "read.token");
    mint(&["--write", "--path-prefix", "inbox/"], "write.token");
    let via = |who: &str, args: &[&str]| {
        user(root, who)
            .args(args)
            .args(["--via", &api])
            .output()
            .expect("via")
    };
    let url = |p: &str| format!("{id}/{p}");
    ok(via(
        "bob",
        &[
            "store",
            "get",
            &url("pub/a.txt"),
            "-o",
            "a.txt",
            "--token",
            "read.token",
        ],
    ));
    assert_eq!(std::fs::read(root.join("a.txt")).expect("a"), b"for bob\n");
    let o = via(
        "bob",
        &[
            "store",
            "get",
            &url("secret/b.txt"),
            "-o",
            "b.txt",
            "--token",
            "read.token",
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("path("), "{err}");
    assert!(!root.join("b.txt").exists());
    // Eve shows bob's token: her key is not its holder.
    let o = via(
        "eve",
        &[
            "store",
            "get",
            &url("pub/a.txt"),
            "-o",
            "eve.txt",
            "--token",
            "read.token",
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("held by another key"), "{err}");
    // Bob writes into alice's inbox, and nowhere else; his read token writes nothing.
    std::fs::write(root.join("note.txt"), b"hello alice\n").expect("note");
    let put = |token: &str, at: &str| {
        via(
            "bob",
            &["store", "put", "note.txt", "--token", token, "--as", at],
        )
    };
    let written = ok(put("write.token", "inbox/note.txt")).trim().to_string();
    assert!(written.starts_with("naac://"), "{written}");
    for (token, at) in [
        ("write.token", "outbox/note.txt"),
        ("read.token", "pub/x.txt"),
    ] {
        let o = put(token, at);
        assert!(!o.status.success(), "{token} {at}");
    }
    // What bob wrote is alice's: she reads it from the storage hosts; bob, there, cannot.
    ok(user(root, "alice")
        .args([
            "store",
            "get",
            &format!("{written}/inbox/note.txt"),
            "-o",
            "note-back.txt",
        ])
        .args(["--no-mdns", "--join", &join])
        .output()
        .expect("get"));
    assert_eq!(
        std::fs::read(root.join("note-back.txt")).expect("note"),
        b"hello alice\n"
    );
    let o = user(root, "bob")
        .args([
            "store",
            "get",
            &format!("{written}/inbox/note.txt"),
            "-o",
            "nope.txt",
        ])
        .args(["--no-mdns", "--join", &join])
        .output()
        .expect("get");
    assert!(!o.status.success());
}

/// Alice stores `root/data` 2-of-4 through `addr`; returns its `naac://` id.
fn put_2_of_4(root: &std::path::Path, addr: &str) -> String {
    ok(user(root, "alice")
        .args(["store", "put", "data", "--k", "2", "--n", "4", "--no-mdns"])
        .args(["--join", addr])
        .output()
        .expect("put"))
    .trim()
    .to_string()
}
