//! WASI calls that do not apply in the sandbox answer with their documented errno instead
//! of trapping, and modules as other toolchains build them (wasi-libc C, TinyGo,
//! AssemblyScript, older ones importing `wasi_unstable`) link and run. Guests are written
//! in WebAssembly text with those toolchains' imports.

use naac_sandbox::{RunResult, Sandbox, SandboxConfig, TaskRun};
use naac_types::{ContentId, Limits, Outcome};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn run_wat(wat: &str, stdin: &[u8]) -> RunResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = SandboxConfig::new(dir.path().join("work")).with_cache_dir(dir.path().join("cache"));
    let sandbox = Sandbox::start(cfg).expect("sandbox");
    let bytes = wat::parse_str(wat).expect("valid WAT");
    let module = sandbox
        .compile(&ContentId::of(&bytes), &bytes)
        .unwrap_or_else(|e| panic!("compile: {e}"));
    let t = TaskRun {
        argv0: "guest".into(),
        stdin: stdin.to_vec(),
        limits: Limits {
            fuel: 1_000_000_000,
            memory: 16 << 20,
            timeout_ms: 20_000,
        },
        seed: [9; 32],
        ..TaskRun::default()
    };
    sandbox
        .run(&module, &t, &Arc::new(AtomicBool::new(false)))
        .expect("host-side run")
}

/// Calls that do not apply here, each once; their errnos (one byte each) go to stdout.
const NOT_HERE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $send (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_shutdown" (func $shutdown (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_raise" (func $raise (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func $link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_allocate" (func $allocate (param i32 i64 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "newdir")
  (global $n (mut i32) (i32.const 0))
  ;; errno k goes to byte 1000 + k
  (func $note (param $e i32)
    (i32.store8 (i32.add (i32.const 1000) (global.get $n)) (local.get $e))
    (global.set $n (i32.add (global.get $n) (i32.const 1))))
  (func (export "_start")
    (call $note (call $accept (i32.const 0) (i32.const 0) (i32.const 100)))
    (call $note (call $accept (i32.const 99) (i32.const 0) (i32.const 100)))
    (call $note (call $recv (i32.const 0) (i32.const 200) (i32.const 0) (i32.const 0) (i32.const 104) (i32.const 108)))
    (call $note (call $send (i32.const 1) (i32.const 200) (i32.const 0) (i32.const 0) (i32.const 104)))
    (call $note (call $shutdown (i32.const 0) (i32.const 1)))
    (call $note (call $raise (i32.const 6)))
    (call $note (call $yield))
    (call $note (call $renumber (i32.const 1) (i32.const 99)))
    (call $note (call $clock (i32.const 99) (i64.const 0) (i32.const 100)))
    (call $note (call $read (i32.const 99) (i32.const 200) (i32.const 0) (i32.const 104)))
    (call $note (call $prestat (i32.const 99) (i32.const 100)))
    ;; /in (fd 3) is read-only
    (call $note (call $mkdir (i32.const 3) (i32.const 0) (i32.const 6)))
    (call $note (call $symlink (i32.const 0) (i32.const 3) (i32.const 3) (i32.const 0) (i32.const 6)))
    (call $note (call $link (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 3) (i32.const 0) (i32.const 6)))
    (call $note (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 1)
      (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 100)))
    (call $note (call $allocate (i32.const 1) (i64.const 0) (i64.const 10)))
    ;; one iovec at 300: the errnos
    (i32.store (i32.const 300) (i32.const 1000))
    (i32.store (i32.const 304) (global.get $n))
    (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 400)))))
"#;

const EBADF: u8 = 8;
const EINVAL: u8 = 28;
const ENOTSOCK: u8 = 57;
const ENOTSUP: u8 = 58;

#[test]
fn calls_that_do_not_apply_answer_with_their_errno() {
    let r = run_wat(NOT_HERE, b"");
    assert_eq!(
        r.outcome,
        Outcome::Ok,
        "{:?} {:?}",
        r.message,
        String::from_utf8_lossy(&r.stderr)
    );
    let e = r.stdout;
    assert_eq!(e.len(), 16, "{e:?}");
    // Sockets: not a socket, or no such descriptor.
    assert_eq!(
        &e[..5],
        &[ENOTSOCK, EBADF, ENOTSOCK, ENOTSOCK, ENOTSOCK],
        "{e:?}"
    );
    assert_eq!(e[5], ENOTSUP, "proc_raise: {e:?}");
    assert_eq!(e[6], 0, "sched_yield: {e:?}");
    assert_eq!(&e[7..11], &[EBADF, EINVAL, EBADF, EBADF], "{e:?}");
    // Writes into the read-only /in, and allocating on a pipe: refused, each with an errno
    // of WASI's list (1..=76).
    for (i, errno) in e[11..].iter().enumerate() {
        assert!((1..=76).contains(errno), "call {}: {errno} ({e:?})", 11 + i);
    }
}

/// Clocks and signals by number, valid or not.
const CLOCKS: &str = r#"
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $time (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $res (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_raise" (func $raise (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (func $note (param $e i32)
    (i32.store8 (i32.add (i32.const 1000) (global.get $n)) (local.get $e))
    (global.set $n (i32.add (global.get $n) (i32.const 1))))
  (func (export "_start")
    (call $note (call $time (i32.const 0) (i64.const 0) (i32.const 100)))
    (call $note (call $time (i32.const 1) (i64.const 0) (i32.const 108)))
    (call $note (call $time (i32.const 2) (i64.const 0) (i32.const 116)))
    (call $note (call $time (i32.const 3) (i64.const 0) (i32.const 116)))
    (call $note (call $time (i32.const 99) (i64.const 0) (i32.const 116)))
    (call $note (call $time (i32.const 0) (i64.const 0) (i32.const 70000)))
    (call $note (call $res (i32.const 1) (i32.const 124)))
    (call $note (call $res (i32.const -5) (i32.const 124)))
    (call $note (call $raise (i32.const 6)))
    (call $note (call $raise (i32.const 200)))
    ;; the errnos, then the wall and monotonic readings and the resolution
    (i32.store (i32.const 300) (i32.const 1000))
    (i32.store (i32.const 304) (global.get $n))
    (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 400)))
    (i32.store (i32.const 300) (i32.const 100))
    (i32.store (i32.const 304) (i32.const 32))
    (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 400)))))
"#;

#[test]
fn clocks_and_signals_by_number_answer_einval_for_unknown_ones() {
    let r = run_wat(CLOCKS, b"");
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    let (e, rest) = r.stdout.split_at(10);
    const EFAULT: u8 = 21;
    assert_eq!(
        e,
        &[
            0, 0, EBADF, EBADF, EINVAL, EFAULT, 0, EINVAL, ENOTSUP, EINVAL
        ],
        "{e:?}"
    );
    let u64_at = |o: usize| u64::from_le_bytes(rest[o..o + 8].try_into().expect("8 bytes"));
    // The virtual clock: the wall clock starts at 2020-01-01, a tick per reading.
    assert_eq!(u64_at(0), 1_577_836_800_000_000_000 + 1_000);
    assert_eq!(u64_at(8), 2_000);
    assert_eq!(u64_at(24), 1_000, "resolution");
}

/// A module shaped like AssemblyScript's output: `env.abort` and `env.seed` beside WASI.
const ASSEMBLYSCRIPT: &str = r#"
(module
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (import "env" "seed" (func $seed (result f64)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; UTF-16 strings, their byte length in the 4 bytes before: "boom" at 104, "a.ts" at 204
  (data (i32.const 100) "\08\00\00\00b\00o\00o\00m\00")
  (data (i32.const 200) "\08\00\00\00a\00.\00t\00s\00")
  (func (export "_start")
    (f64.store (i32.const 400) (call $seed))
    (i32.store (i32.const 300) (i32.const 400))
    (i32.store (i32.const 304) (i32.const 8))
    (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 500)))
    (call $abort (i32.const 104) (i32.const 204) (i32.const 3) (i32.const 5))))
"#;

#[test]
fn assemblyscript_modules_link_and_abort_with_their_message() {
    let r = run_wat(ASSEMBLYSCRIPT, b"");
    assert_eq!(r.outcome, Outcome::Trap);
    assert!(
        r.message.contains("abort: boom at a.ts:3:5"),
        "{}",
        r.message
    );
    // The seed is the task's: the same on every run.
    let again = run_wat(ASSEMBLYSCRIPT, b"");
    assert_eq!(r.stdout.len(), 8);
    assert_eq!(r.stdout, again.stdout);
}

/// What wasi-libc (C) and TinyGo programs import at start-up and exit with.
const LIBC_STARTUP: &str = r#"
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $asz (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $esz (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $pname (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 900) "hello\n")
  (func (export "_start")
    (local $fd i32)
    (if (call $asz (i32.const 0) (i32.const 4)) (then (unreachable)))
    (if (call $args (i32.const 16) (i32.const 64)) (then (unreachable)))
    (if (call $esz (i32.const 0) (i32.const 4)) (then (unreachable)))
    (if (call $env (i32.const 16) (i32.const 64)) (then (unreachable)))
    ;; walk the preopens from fd 3 until EBADF, as wasi-libc does
    (local.set $fd (i32.const 3))
    (block $done
      (loop $next
        (br_if $done (call $prestat (local.get $fd) (i32.const 200)))
        (if (call $pname (local.get $fd) (i32.const 300) (i32.load (i32.const 204)))
          (then (unreachable)))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $next)))
    (if (i32.ne (local.get $fd) (i32.const 5)) (then (unreachable)))
    (if (call $fdstat (i32.const 1) (i32.const 400)) (then (unreachable)))
    (if (call $random (i32.const 500) (i32.const 16)) (then (unreachable)))
    (i32.store (i32.const 800) (i32.const 900))
    (i32.store (i32.const 804) (i32.const 6))
    (if (call $write (i32.const 1) (i32.const 800) (i32.const 1) (i32.const 808))
      (then (unreachable)))
    (drop (call $close (i32.const 3)))
    (call $exit (i32.const 0))))
"#;

#[test]
fn a_wasi_libc_style_start_up_sees_two_preopens_and_exits_cleanly() {
    let r = run_wat(LIBC_STARTUP, b"");
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert_eq!(r.stdout, b"hello\n");
}
