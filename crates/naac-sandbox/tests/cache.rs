//! The compiled-module cache and the limits on compiling: the disk cache stays within its
//! quota, evicting the least recently used artifact; a truncated or altered artifact is
//! thrown away and the module compiled again, never loaded; a module too slow to compile is
//! refused.

use naac_sandbox::{ModuleError, Sandbox, SandboxConfig, TaskRun};
use naac_types::{ContentId, Limits};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Exit code of the module [`exiting`] makes for `i` (WASI exit codes stop at 125).
fn code(i: u32) -> i32 {
    (i % 100) as i32
}

/// Distinct WASI commands that differ only in a constant: number `i` exits with `code(i)`.
fn exiting(i: u32) -> Vec<u8> {
    let code = code(i);
    wat::parse_str(format!(
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (global i32 (i32.const {i}))
             (func (export "_start") (call $exit (i32.const {code}))))"#
    ))
    .expect("valid WAT")
}

fn config(dir: &Path, quota: u64) -> SandboxConfig {
    let mut c = SandboxConfig::new(dir.join("work")).with_cache_dir(dir.join("cache"));
    c.cache_quota = quota;
    c
}

/// The artifact files in the cache and their total size.
fn artifacts(dir: &Path) -> (Vec<PathBuf>, u64) {
    let mut files = Vec::new();
    let mut total = 0;
    for e in std::fs::read_dir(dir.join("cache")).expect("cache dir") {
        let e = e.expect("entry");
        total += e.metadata().expect("metadata").len();
        files.push(e.path());
    }
    (files, total)
}

fn exit_code(sandbox: &Sandbox, module: &naac_sandbox::Prepared) -> Option<i32> {
    let t = TaskRun {
        argv0: "exit".into(),
        env: Vec::new(),
        limits: Limits::default(),
        ..TaskRun::default()
    };
    let r = sandbox
        .run(module, &t, &Arc::new(AtomicBool::new(false)))
        .expect("run");
    r.exit_code
}

#[test]
fn two_hundred_modules_leave_the_cache_within_its_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    const QUOTA: u64 = 256 << 10;
    let sandbox = Sandbox::start(config(dir.path(), QUOTA)).expect("sandbox");
    let mut largest = 0;
    for i in 0..200 {
        let m = exiting(i);
        let id = ContentId::of(&m);
        let p = sandbox.compile(&id, &m).expect("compile");
        assert_eq!(exit_code(&sandbox, &p), Some(code(i)), "module {i}");
        let (files, total) = artifacts(dir.path());
        let sizes = files.iter().map(|f| f.metadata().map_or(0, |m| m.len()));
        largest = largest.max(sizes.max().unwrap_or(0));
        assert!(total <= QUOTA, "{total} bytes cached after {i} modules");
    }
    let (files, total) = artifacts(dir.path());
    eprintln!(
        "{} artifacts of up to {largest} bytes, {total} bytes in all, kept under a {QUOTA}-byte quota",
        files.len()
    );
    assert!(files.len() < 200, "some were evicted");
    assert!(!files.is_empty(), "the cache still caches");
    // The newest survives, and a new process runs it from the cache.
    drop(sandbox);
    let again = Sandbox::start(config(dir.path(), QUOTA)).expect("sandbox");
    let last = exiting(199);
    let p = again
        .cached(&ContentId::of(&last))
        .expect("the last module is cached");
    assert_eq!(exit_code(&again, &p), Some(code(199)));
}

#[test]
fn the_least_recently_used_artifact_goes_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids: Vec<(ContentId, Vec<u8>)> = (0..4)
        .map(|i| {
            let m = exiting(i);
            (ContentId::of(&m), m)
        })
        .collect();
    // Measure one artifact, then allow three and a half.
    let size = {
        let probe = tempfile::tempdir().expect("tempdir");
        let s = Sandbox::start(config(probe.path(), u64::MAX)).expect("sandbox");
        s.compile(&ids[0].0, &ids[0].1).expect("compile");
        artifacts(probe.path()).1
    };
    let quota = size * 7 / 2;
    let pause = || std::thread::sleep(Duration::from_millis(30)); // distinct mtimes
    {
        let s = Sandbox::start(config(dir.path(), quota)).expect("sandbox");
        for (id, m) in &ids[..3] {
            s.compile(id, m).expect("compile");
            pause();
        }
    }
    // Module 0, the oldest written, is used again in a new process; then module 3 comes.
    let s = Sandbox::start(config(dir.path(), quota)).expect("sandbox");
    assert!(s.cached(&ids[0].0).is_some());
    pause();
    s.compile(&ids[3].0, &ids[3].1).expect("compile");
    drop(s);
    let s = Sandbox::start(config(dir.path(), quota)).expect("sandbox");
    assert!(
        s.cached(&ids[1].0).is_none(),
        "the least recently used went"
    );
    for i in [0, 2, 3] {
        assert!(s.cached(&ids[i].0).is_some(), "module {i} stayed");
    }
}

#[test]
fn an_artifact_larger_than_the_quota_is_not_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Sandbox::start(config(dir.path(), 64)).expect("sandbox");
    let m = exiting(7);
    let p = s.compile(&ContentId::of(&m), &m).expect("compile");
    assert_eq!(exit_code(&s, &p), Some(7));
    assert_eq!(artifacts(dir.path()), (Vec::new(), 0));
}

fn testkit() -> Vec<u8> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    std::fs::read(Path::new(&dir).join("../../examples/testkit/testkit.wasm"))
        .expect("examples/testkit/testkit.wasm is committed")
}

/// Compiles testkit into a fresh cache, damages its artifact with `damage`, and checks a new
/// process neither loads it nor fails: it compiles again, runs right, and caches a whole
/// artifact.
fn damaged_artifact_is_recompiled(damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), SandboxConfig::DEFAULT_CACHE_QUOTA);
    let bytes = testkit();
    let id = ContentId::of(&bytes);
    Sandbox::start(cfg.clone())
        .expect("sandbox")
        .compile(&id, &bytes)
        .expect("compile");
    let (files, _) = artifacts(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let whole = std::fs::read(&files[0]).expect("artifact");
    damage(&files[0]);

    let s = Sandbox::start(cfg.clone()).expect("sandbox");
    assert!(s.cached(&id).is_none(), "a damaged artifact is not loaded");
    assert!(!files[0].exists(), "and it is deleted");
    let p = s.compile(&id, &bytes).expect("compiled again");
    let t = TaskRun {
        argv0: "testkit".into(),
        env: Vec::new(),
        args: vec!["print".into(), "whole again".into()],
        limits: Limits::default(),
        ..TaskRun::default()
    };
    let r = s
        .run(&p, &t, &Arc::new(AtomicBool::new(false)))
        .expect("run");
    assert_eq!(r.stdout, b"whole again\n");
    assert_eq!(
        std::fs::read(&files[0]).expect("cached again"),
        whole,
        "the same artifact, whole"
    );
    assert!(Sandbox::start(cfg).expect("sandbox").cached(&id).is_some());
}

#[test]
fn a_truncated_artifact_is_recompiled() {
    damaged_artifact_is_recompiled(|f| {
        let len = f.metadata().expect("metadata").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .expect("open")
            .set_len(len / 2)
            .expect("truncate");
    });
}

#[test]
fn an_altered_artifact_is_recompiled() {
    // One bit in the middle of the artifact (its compiled code or data): wasmtime alone
    // would map it and run whatever it now says.
    damaged_artifact_is_recompiled(|f| {
        let mut b = std::fs::read(f).expect("read");
        let mid = b.len() / 2;
        b[mid] ^= 0x10;
        std::fs::write(f, b).expect("write");
    });
}

/// A module with many functions: compiling it takes far longer than a millisecond.
fn big_module() -> Vec<u8> {
    let mut s = String::from("(module (memory (export \"memory\") 1)");
    for i in 0..2000 {
        s.push_str(&format!(
            "(func $f{i} (param i32) (result i32) local.get 0 i32.const {i} i32.mul i32.const 7 i32.add)"
        ));
    }
    s.push_str("(func (export \"_start\")))");
    wat::parse_str(s).expect("valid WAT")
}

#[test]
fn a_module_too_slow_to_compile_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), SandboxConfig::DEFAULT_CACHE_QUOTA);
    cfg.compile_timeout = Duration::from_millis(1);
    let s = Sandbox::start(cfg).expect("sandbox");
    let m = big_module();
    let id = ContentId::of(&m);
    for attempt in 0..2 {
        match s.compile(&id, &m) {
            Err(e @ ModuleError::TooSlow { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&id.short()), "names the module: {msg}");
                assert!(msg.contains("to compile"), "{msg}");
            }
            Err(e) => panic!("attempt {attempt}: {e}"),
            Ok(_) => panic!("attempt {attempt}: compiled within 1 ms"),
        }
    }
    assert_eq!(
        artifacts(dir.path()).0,
        Vec::<PathBuf>::new(),
        "nothing cached"
    );
    // Under the default limit the same module compiles.
    let other = tempfile::tempdir().expect("tempdir");
    let s =
        Sandbox::start(config(other.path(), SandboxConfig::DEFAULT_CACHE_QUOTA)).expect("sandbox");
    s.compile(&id, &m).expect("compiles in time");
}
