//! Helpers shared by the end-to-end tests: real `naac` processes on 127.0.0.1 with a
//! scratch data dir.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The user id (`naac key show --user`) of the data dir `home`, made on first use.
pub fn user_id(home: &Path) -> String {
    let out = naac()
        .env("NAAC_HOME", home)
        .args(["key", "show", "--user"])
        .output()
        .expect("naac key show");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

pub fn naac() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_naac"));
    // Runs with a bank refund at once unless a test asks for a claim window (the default
    // of 10 minutes would hold a payer's rest for that long).
    c.env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env("NAAC_CLAIM_WINDOW", "0s");
    c
}

pub fn examples() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"))
        .join("../../examples")
}

/// A scratch directory that is also the data dir of every process the test starts.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }
    pub fn cmd(&self) -> Command {
        let mut c = naac();
        c.env("NAAC_HOME", self.home()).current_dir(self.path());
        c
    }
    /// Writes a job file next to a copy of an example module.
    pub fn job(&self, name: &str, module: &str, body: &str) -> PathBuf {
        let src = examples().join(module);
        let file = Path::new(module).file_name().expect("module file name");
        std::fs::copy(&src, self.path().join(file)).expect("copy module");
        let p = self.path().join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!(
                "name = \"{name}\"\nmodule = \"{}\"\n{body}",
                file.to_string_lossy()
            ),
        )
        .expect("write job");
        p
    }
    pub fn run(&self, job: &Path, extra: &[&str]) -> (Output, Value) {
        let out_dir = self.path().join(format!(
            "out-{}",
            job.file_stem().expect("stem").to_string_lossy()
        ));
        self.run_to(job, &out_dir, extra)
    }
    /// `naac run JOB --json --out DIR` with this data dir, for a test to add flags to and
    /// spawn.
    pub fn run_cmd(&self, job: &Path, out_dir: &Path) -> Command {
        let mut c = self.cmd();
        c.arg("run").arg(job).args(["--json", "--out"]).arg(out_dir);
        c
    }
    pub fn run_to(&self, job: &Path, out_dir: &Path, extra: &[&str]) -> (Output, Value) {
        let out = self
            .run_cmd(job, out_dir)
            .args(extra)
            .output()
            .expect("run naac");
        let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out, summary)
    }
}

/// Starts a `naac node ...` command and waits for the address it prints first
/// (`listening on MULTIADDR`).
pub fn spawn_node(mut c: Command) -> (Child, String) {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start naac node");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the node's address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

/// A TCP port on 127.0.0.1 free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `naac node --provide` process on 127.0.0.1 and its address.
pub struct Provider {
    pub child: Child,
    pub addr: String,
}

impl Provider {
    pub fn start(s: &Scratch, slots: u32) -> Self {
        Self::start_with(s, slots, &[])
    }

    /// A provider with extra `naac node` flags (e.g. `--faulty wrong:1.0`).
    pub fn start_with(s: &Scratch, slots: u32, extra: &[&str]) -> Self {
        let mut c = s.cmd();
        c.args(["node", "--provide", "--no-mdns", "--ephemeral"])
            .args(["--slots", &slots.to_string()])
            .args(extra)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
        let (child, addr) = spawn_node(c);
        Provider { child, addr }
    }

    /// The provider's peer id (the last component of its address).
    pub fn peer_id(&self) -> String {
        self.addr
            .rsplit('/')
            .next()
            .expect("address has a peer id")
            .to_string()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a command with its stdout lines read into a channel (so later lines, such as a
/// node's relayed address, are seen, and the pipe stays open while it runs).
pub fn spawn_lines(mut c: Command) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start naac");
    let out = child.stdout.take().expect("stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}

/// The first `listening on ADDR` line whose address `pick` accepts (within 20 s).
pub fn address_from(
    lines: &std::sync::mpsc::Receiver<String>,
    pick: impl Fn(&str) -> bool,
) -> String {
    loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the node printed the address in time");
        if let Some(addr) = line.strip_prefix("listening on ")
            && pick(addr)
        {
            return addr.to_string();
        }
    }
}

/// A requester node (`naac node`, no role) with its API on `api` and `extra` flags, once
/// it says where its API is.
pub fn requester_node(s: &Scratch, api: &str, extra: &[&str]) -> Child {
    let mut child = s
        .cmd()
        .args(["node", "--no-mdns", "--api", api])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("naac node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line.trim(), format!("api on http://{api}"));
    child
}

/// A `naac node` process in a data dir of its own, killed when dropped.
pub struct Node {
    pub child: Child,
    pub addr: String,
    pub home: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `naac node --provide --slots 1` on 127.0.0.1 with `policy` in `DIR/name`, plus `extra`
/// arguments.
pub fn provider(s: &Scratch, name: &str, policy: &str, extra: &[&str]) -> Node {
    let home = s.path().join(name);
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(home.join("policy.toml"), policy).expect("policy");
    let mut c = naac();
    c.env("NAAC_HOME", &home)
        .args(["node", "--provide", "--no-mdns", "--slots", "1"])
        .args(extra)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let (child, addr) = spawn_node(c);
    Node { child, addr, home }
}

/// Rewrites a job file `Scratch::job` made (its name line and module copy kept) with the
/// stages in `body`.
pub fn with_stages(job: &Path, body: &str) {
    let text = std::fs::read_to_string(job).expect("job");
    let name = text.lines().next().expect("name line").to_string();
    std::fs::write(job, format!("{name}\n{body}")).expect("job");
}
