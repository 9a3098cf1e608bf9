//! The sandbox against the real testkit guest: every outcome, the file-system boundary,
//! determinism, the compiled-module cache, and checkpoint/restore.

use naac_sandbox::{
    CheckpointSink, MAX_CHECKPOINT_BYTES, ModuleError, Prepared, RunResult, Sandbox, SandboxConfig,
    TaskRun,
};
use naac_types::{ContentId, Limits, Outcome};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn testkit_bytes() -> Vec<u8> {
    let p = example("testkit/testkit.wasm");
    std::fs::read(p).expect("examples/testkit/testkit.wasm is committed")
}

struct Fixture {
    _dir: tempfile::TempDir,
    sandbox: Sandbox,
    module: Prepared,
}

fn fixture_with(f: impl FnOnce(SandboxConfig) -> SandboxConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg =
        f(SandboxConfig::new(dir.path().join("work")).with_cache_dir(dir.path().join("cache")));
    let sandbox = Sandbox::start(cfg).expect("sandbox");
    let bytes = testkit_bytes();
    let module = sandbox
        .compile(&ContentId::of(&bytes), &bytes)
        .expect("compile testkit");
    Fixture {
        _dir: dir,
        sandbox,
        module,
    }
}

fn fixture() -> Fixture {
    fixture_with(|c| c)
}

fn task(args: &[&str]) -> TaskRun {
    TaskRun {
        argv0: "testkit".into(),
        env: Vec::new(),
        args: args.iter().map(|s| s.to_string()).collect(),
        limits: Limits {
            fuel: 2_000_000_000,
            memory: 64 << 20,
            timeout_ms: 20_000,
        },
        seed: [7; 32],
        ..TaskRun::default()
    }
}

impl Fixture {
    fn run(&self, t: &TaskRun) -> RunResult {
        self.sandbox
            .run(&self.module, t, &Arc::new(AtomicBool::new(false)))
            .expect("host-side run")
    }
}

#[test]
fn noop_is_ok_and_metered() {
    let f = fixture();
    let r = f.run(&task(&["noop"]));
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert_eq!(r.exit_code, Some(0));
    assert!(r.fuel_used > 0);
    assert!(r.stdout.is_empty());
}

#[test]
fn stdin_reaches_the_guest() {
    let f = fixture();
    let mut t = task(&["echo"]);
    t.stdin = b"hello sandbox\n".to_vec();
    let r = f.run(&t);
    assert_eq!(r.outcome, Outcome::Ok);
    assert_eq!(r.stdout, b"hello sandbox\n");
}

#[test]
fn runs_are_deterministic() {
    let f = fixture();
    let a = f.run(&task(&["random"]));
    let b = f.run(&task(&["random"]));
    assert_eq!(a.outcome, Outcome::Ok, "{}", a.message);
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout, "same task, same bytes");
    assert_eq!(a.fuel_used, b.fuel_used, "same task, same fuel");
    let mut other = task(&["random"]);
    other.seed = [8; 32];
    let c = f.run(&other);
    assert_ne!(a.stdout, c.stdout, "the seed drives the random source");
}

#[test]
fn trap_is_an_outcome() {
    let f = fixture();
    let r = f.run(&task(&["trap"]));
    assert_eq!(r.outcome, Outcome::Trap);
    assert!(!r.message.is_empty());
}

#[test]
fn nonzero_exit() {
    let f = fixture();
    let r = f.run(&task(&["exit", "7"]));
    assert_eq!(r.outcome, Outcome::Exit);
    assert_eq!(r.exit_code, Some(7));
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let f = fixture();
    let mut t = task(&["loop"]);
    t.limits.fuel = 50_000_000;
    let r = f.run(&t);
    assert_eq!(r.outcome, Outcome::OutOfFuel, "{}", r.message);
    assert_eq!(r.fuel_used, 50_000_000);
}

#[test]
fn infinite_loop_times_out() {
    let f = fixture();
    let mut t = task(&["loop"]);
    t.limits.fuel = u64::MAX / 2;
    t.limits.timeout_ms = 300;
    let r = f.run(&t);
    assert_eq!(r.outcome, Outcome::Timeout, "{}", r.message);
    assert!(r.wall.as_millis() < 5_000, "stopped promptly: {:?}", r.wall);
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let f = fixture();
    let mut t = task(&["alloc"]);
    t.limits.memory = 16 << 20;
    let r = f.run(&t);
    assert_eq!(r.outcome, Outcome::Memory, "{}", r.message);
}

#[test]
fn huge_stdout_is_cut_off() {
    let f = fixture_with(|mut c| {
        c.stdout_limit = 1 << 20;
        c
    });
    let r = f.run(&task(&["bytes", "1073741824"]));
    assert_eq!(r.outcome, Outcome::Trap, "{}", r.message);
    assert!(r.message.contains("stdout exceeded"), "{}", r.message);
    assert!(r.stdout.len() <= 1 << 20);
}

#[test]
fn host_files_are_out_of_reach() {
    let f = fixture();
    for path in [
        "/etc/passwd",
        "/in/../etc/passwd",
        "../../../../etc/passwd",
        "/out/../../x",
    ] {
        let r = f.run(&task(&["readfile", path]));
        assert_eq!(r.outcome, Outcome::Exit, "{path}: {}", r.message);
        assert_eq!(r.exit_code, Some(3), "{path}");
        assert!(
            !String::from_utf8_lossy(&r.stdout).contains("root:"),
            "{path}"
        );
    }
}

#[test]
fn inputs_and_outputs() {
    let f = fixture();
    let mut t = task(&["readin", "data.bin"]);
    t.inputs = vec![("data.bin".into(), Arc::new(vec![1u8, 2, 3, 250]))];
    let r = f.run(&t);
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "4 256");

    let r = f.run(&task(&["outfile", "result.bin", "1000"]));
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert_eq!(r.outputs.len(), 1);
    assert_eq!(r.outputs[0].0, "result.bin");
    assert_eq!(r.outputs[0].1.len(), 1000);
    assert_eq!(r.outputs[0].1[251], 0);
}

#[test]
fn input_names_must_be_plain() {
    let f = fixture();
    let mut t = task(&["noop"]);
    t.inputs = vec![("../evil".into(), Arc::new(vec![1]))];
    assert!(
        f.sandbox
            .run(&f.module, &t, &Arc::new(AtomicBool::new(false)))
            .is_err()
    );
}

#[test]
fn invalid_modules_are_rejected() {
    let f = fixture();
    let junk = b"\0asm\x01\0\0\0garbage".to_vec();
    assert!(matches!(
        f.sandbox.compile(&ContentId::of(&junk), &junk),
        Err(ModuleError::Invalid(_))
    ));
    assert!(matches!(
        f.sandbox.compile(&ContentId::of(b"other"), &junk),
        Err(ModuleError::HashMismatch { .. })
    ));
    // A valid module that is not a WASI command.
    let lib = b"\0asm\x01\0\0\0".to_vec();
    assert!(matches!(
        f.sandbox.compile(&ContentId::of(&lib), &lib),
        Err(ModuleError::Unlinkable(_))
    ));
    // A module over the size limit is refused before it is hashed or compiled: a valid
    // header with a custom section padding it out.
    let mut big = b"\0asm\x01\0\0\0".to_vec();
    big.resize(naac_sandbox::MAX_MODULE_BYTES + 1, 0);
    let Err(e) = f.sandbox.compile(&ContentId::of(b"not even hashed"), &big) else {
        panic!("a module over the limit was compiled")
    };
    assert!(matches!(e, ModuleError::TooLarge { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "module of {} bytes is over the {}-byte limit",
            naac_sandbox::MAX_MODULE_BYTES + 1,
            naac_sandbox::MAX_MODULE_BYTES
        )
    );
}

#[test]
fn cancellation_stops_a_running_guest() {
    let f = fixture();
    let mut t = task(&["loop"]);
    t.limits.fuel = u64::MAX / 2;
    let cancel = Arc::new(AtomicBool::new(false));
    let c2 = cancel.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        c2.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let r = f.sandbox.run(&f.module, &t, &cancel).expect("run");
    stopper.join().expect("join");
    assert_eq!(r.outcome, Outcome::Timeout);
    assert!(r.message.contains("cancelled"));
}

#[test]
fn compiled_modules_are_cached_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = SandboxConfig::new(dir.path().join("work")).with_cache_dir(dir.path().join("cache"));
    let bytes = testkit_bytes();
    let id = ContentId::of(&bytes);
    {
        let a = Sandbox::start(cfg.clone()).expect("sandbox");
        assert!(a.cached(&id).is_none());
        a.compile(&id, &bytes).expect("compile");
    }
    let b = Sandbox::start(cfg).expect("sandbox");
    let m = b
        .cached(&id)
        .expect("a new process finds the compiled module on disk");
    let r = b
        .run(
            &m,
            &task(&["print", "cached"]),
            &Arc::new(AtomicBool::new(false)),
        )
        .expect("run");
    assert_eq!(r.stdout, b"cached\n");
}

#[test]
fn scratch_dirs_are_clean_for_the_next_task() {
    let f = fixture();
    let mut t = task(&["readin", "secret.bin"]);
    t.inputs = vec![("secret.bin".into(), Arc::new(vec![42; 10]))];
    assert_eq!(f.run(&t).outcome, Outcome::Ok);
    let r = f.run(&task(&["outfile", "left.bin", "10"]));
    assert_eq!(r.outcome, Outcome::Ok);
    // Neither the previous task's input nor its output is visible to the next one.
    for path in ["/in/secret.bin", "/out/left.bin"] {
        let r = f.run(&task(&["readfile", path]));
        assert_eq!(r.exit_code, Some(3), "{path} leaked into the next task");
    }
    let r = f.run(&task(&["noop"]));
    assert!(r.outputs.is_empty());
}

#[test]
fn a_guest_cannot_fill_the_disk_through_out() {
    let f = fixture_with(|mut c| {
        c.output_limit = 4 << 20;
        c
    });
    let mut t = task(&["outfile", "huge.bin", "100000000000"]);
    t.limits.fuel = u64::MAX / 2;
    t.limits.timeout_ms = 120_000;
    let r = f.run(&t);
    assert_eq!(r.outcome, Outcome::Trap, "{}", r.message);
    assert!(r.message.contains("/out"), "{}", r.message);
    assert!(r.wall.as_secs() < 30, "stopped while running: {:?}", r.wall);
    // And the next task starts with an empty /out.
    let r = f.run(&task(&["readfile", "/out/huge.bin"]));
    assert_eq!(r.exit_code, Some(3));
}

/// A guest that nests directories through directory handles, past what a path may name,
/// then writes without end at the bottom: the watch on `/out` must still see it and stop it.
const DEEP_WRITER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; a 100-byte directory name at 0, the file name "f" at 100
  (data (i32.const 0) "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd")
  (data (i32.const 100) "f")
  (func (export "_start")
    (local $fd i32) (local $i i32)
    (local.set $fd (i32.const 4)) ;; the /out preopen
    (block $deep
      (loop $down
        (br_if $deep (i32.ge_u (local.get $i) (i32.const 60)))
        (drop (call $mkdir (local.get $fd) (i32.const 0) (i32.const 100)))
        (if (call $open (local.get $fd) (i32.const 0) (i32.const 0) (i32.const 100)
              (i32.const 2) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 200))
          (then (unreachable)))
        (local.set $fd (i32.load (i32.const 200)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $down)))
    (if (call $open (local.get $fd) (i32.const 0) (i32.const 100) (i32.const 1)
          (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 200))
      (then (unreachable)))
    (local.set $fd (i32.load (i32.const 200)))
    ;; one iovec at 300: 64 KiB from 1024
    (i32.store (i32.const 300) (i32.const 1024))
    (i32.store (i32.const 304) (i32.const 65536))
    (loop $more
      (drop (call $write (local.get $fd) (i32.const 300) (i32.const 1) (i32.const 400)))
      (br $more)))
)
"#;

#[test]
fn directories_nested_past_path_max_do_not_dodge_the_out_limit() {
    let f = fixture_with(|mut c| {
        c.output_limit = 4 << 20;
        c
    });
    let bytes = wat::parse_str(DEEP_WRITER).expect("valid WAT");
    let module = f
        .sandbox
        .compile(&ContentId::of(&bytes), &bytes)
        .unwrap_or_else(|e| panic!("compile: {e}"));
    let mut t = task(&[]);
    t.limits.fuel = u64::MAX / 2;
    t.limits.timeout_ms = 60_000;
    let r = f
        .sandbox
        .run(&module, &t, &Arc::new(AtomicBool::new(false)))
        .expect("host-side run");
    assert_eq!(r.outcome, Outcome::Trap, "{}", r.message);
    assert!(
        r.message.contains("/out grew past"),
        "stopped by the /out watch, not by its time limit: {}",
        r.message
    );
}

#[test]
fn sleeping_takes_virtual_time_only() {
    let f = fixture();
    // An hour of sleep: the virtual clock jumps, the host does not wait, and the timeout (20 s
    // here) is never at risk inside a host call.
    let r = f.run(&task(&["sleep", "3600000"]));
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert!(r.wall.as_secs() < 10, "slept for real: {:?}", r.wall);
    let out = String::from_utf8_lossy(&r.stdout);
    let ms: u64 = out
        .trim()
        .strip_prefix("slept ")
        .and_then(|s| s.strip_suffix(" ms"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {out:?}"));
    assert!(ms >= 3_600_000, "the guest saw {ms} ms pass");
    // Deterministic like everything else.
    assert_eq!(f.run(&task(&["sleep", "3600000"])).stdout, r.stdout);
}

/// A sink that keeps every checkpoint it gets.
fn collecting_sink() -> (CheckpointSink, Arc<Mutex<Vec<Vec<u8>>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    let sink = CheckpointSink::new(move |state| keep.lock().expect("sink lock").push(state));
    (sink, got)
}

/// `ckpt 5 2000 100`: a SHA-256 chain of 2000 steps, checkpointed every 100.
fn ckpt_task(interval: Option<Duration>, sink: &CheckpointSink) -> TaskRun {
    TaskRun {
        checkpoint_interval: interval,
        on_checkpoint: Some(sink.clone()),
        ..task(&["ckpt", "5", "2000", "100"])
    }
}

#[test]
fn checkpoints_reach_the_sink() {
    let f = fixture();
    let (sink, got) = collecting_sink();
    let r = f.run(&ckpt_task(Some(Duration::ZERO), &sink));
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    let got = got.lock().expect("sink lock");
    // Every 100 steps from step 1, the last step excepted: 101, 201, ..., 1901.
    assert_eq!(got.len(), 19);
    assert_eq!(r.checkpoints, 19);
    assert!(got.iter().all(|c| c.len() == 40), "(step, state) each");
    // Checkpointing does not change the result: the same chain as `sha256`.
    let plain = f.run(&task(&["sha256", "5", "2000"]));
    assert_eq!(r.stdout, plain.stdout);
}

#[test]
fn a_run_resumes_from_a_checkpoint() {
    let f = fixture();
    let (sink, got) = collecting_sink();
    let fresh = f.run(&ckpt_task(Some(Duration::ZERO), &sink));
    assert_eq!(fresh.outcome, Outcome::Ok, "{}", fresh.message);
    assert!(!String::from_utf8_lossy(&fresh.stderr).contains("resumed"));
    let mid = got.lock().expect("sink lock")[9].clone();

    let (sink, _) = collecting_sink();
    let mut t = ckpt_task(None, &sink);
    t.restore = Some(Arc::new(mid));
    let resumed = f.run(&t);
    assert_eq!(resumed.outcome, Outcome::Ok, "{}", resumed.message);
    assert_eq!(
        resumed.stdout, fresh.stdout,
        "same bytes as an uninterrupted run"
    );
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(stderr.contains("resumed at step 1001"), "{stderr}");
    assert!(
        resumed.fuel_used < fresh.fuel_used,
        "the restored steps were skipped"
    );
}

#[test]
fn checkpoints_can_be_disabled() {
    let f = fixture();
    let (sink, got) = collecting_sink();
    let r = f.run(&ckpt_task(None, &sink));
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert_eq!(r.checkpoints, 0);
    assert!(got.lock().expect("sink lock").is_empty());
}

#[test]
fn checkpoints_wait_for_their_interval() {
    let f = fixture();
    let (sink, got) = collecting_sink();
    let r = f.run(&ckpt_task(Some(Duration::from_secs(3600)), &sink));
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert_eq!(r.checkpoints, 0);
    assert!(got.lock().expect("sink lock").is_empty());
}

#[test]
fn an_oversized_checkpoint_traps_even_when_disabled() {
    let f = fixture();
    let big = (MAX_CHECKPOINT_BYTES + 1).to_string();
    let mut t = task(&["ckptbig", &big, "1"]);
    t.limits.memory = 256 << 20;
    let r = f.run(&t);
    assert_eq!(r.outcome, Outcome::Trap, "{}", r.message);
    assert_eq!(
        r.message,
        format!("checkpoint of {big} bytes exceeds the 64 MiB limit")
    );
    // The largest allowed state is fine.
    let mut t = task(&["ckptbig", &MAX_CHECKPOINT_BYTES.to_string(), "2"]);
    t.limits.memory = 256 << 20;
    let lens = Arc::new(Mutex::new(Vec::new()));
    let keep = lens.clone();
    t.checkpoint_interval = Some(Duration::ZERO);
    t.on_checkpoint = Some(CheckpointSink::new(move |state| {
        keep.lock().expect("sink lock").push(state.len());
    }));
    let r = f.run(&t);
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert_eq!(r.stdout, b"2\n");
    assert_eq!(*lens.lock().expect("sink lock"), [MAX_CHECKPOINT_BYTES; 2]);
}

#[test]
fn an_oversized_restore_is_refused() {
    let f = fixture();
    let mut t = task(&["noop"]);
    t.restore = Some(Arc::new(vec![0; MAX_CHECKPOINT_BYTES + 1]));
    assert!(
        f.sandbox
            .run(&f.module, &t, &Arc::new(AtomicBool::new(false)))
            .is_err()
    );
}

#[test]
fn guests_without_checkpoints_run_as_before() {
    let f = fixture();
    let r = f.run(&task(&["print", "still here"]));
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert_eq!(r.stdout, b"still here\n");
    assert_eq!(r.checkpoints, 0);
    // pi imports nothing from `naac`.
    let pi = std::fs::read(example("pi/pi.wasm")).expect("examples/pi/pi.wasm is committed");
    let module = f
        .sandbox
        .compile(&ContentId::of(&pi), &pi)
        .expect("compile pi");
    let mut t = task(&["1", "1000"]);
    t.argv0 = "pi".into();
    let r = f
        .sandbox
        .run(&module, &t, &Arc::new(AtomicBool::new(false)))
        .expect("run pi");
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert!(r.stdout.ends_with(b" 1000\n"));
}

/// A minimal WASI command whose `_start` calls the function `naac::NAME`, imported with type
/// `() -> ()`.
fn module_importing(name: &str) -> Vec<u8> {
    let name_len = u8::try_from(name.len()).expect("short name");
    let mut import = vec![1, 4];
    import.extend_from_slice(b"naac");
    import.push(name_len);
    import.extend_from_slice(name.as_bytes());
    import.extend_from_slice(&[0, 0]);
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type 0: () -> ()
    m.extend_from_slice(&[2, u8::try_from(import.len()).expect("short section")]);
    m.extend_from_slice(&import);
    m.extend_from_slice(&[3, 2, 1, 0]); // function 1 has type 0
    m.extend_from_slice(&[7, 10, 1, 6]);
    m.extend_from_slice(b"_start");
    m.extend_from_slice(&[0, 1]); // exports function 1
    m.extend_from_slice(&[10, 6, 1, 4, 0, 0x10, 0, 0x0b]); // body: call 0
    m
}

#[test]
fn unknown_naac_imports_are_unlinkable() {
    let f = fixture();
    // `checkpoint` exists but takes (i32, i32).
    for name in ["bogus", "checkpoint"] {
        let m = module_importing(name);
        match f.sandbox.compile(&ContentId::of(&m), &m) {
            Err(ModuleError::Unlinkable(e)) => assert!(e.contains(name), "{e}"),
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name}: linked"),
        }
    }
}

/// A committed example module, found at run time: the test binary may have been built in
/// another checkout sharing the target directory, so a compile-time path could be stale.
fn example(rel: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    std::path::Path::new(&dir).join("../../examples").join(rel)
}
