//! Guest speed: the pi and SHA-256 kernels inside the sandbox against the same kernels
//! compiled natively, in each NaN mode.

use super::{Figure, TESTKIT};
use anyhow::Context as _;
use naac_sandbox::{Sandbox, SandboxConfig, TaskRun};
use naac_types::{ContentId, Limits, Outcome};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Guest speed against the same kernels compiled natively (best of three runs each).
pub(super) fn figures(work: PathBuf, quick: bool) -> anyhow::Result<Vec<Figure>> {
    let scale = if quick { 4 } else { 1 };
    let pi_args = [
        "pi".to_string(),
        "1".into(),
        (100_000_000 / scale).to_string(),
    ];
    let sha_rounds = 4_000_000 / scale;
    let sha_args = ["sha256".to_string(), "1".into(), sha_rounds.to_string()];
    let id = ContentId::of(TESTKIT);
    let sandbox = Sandbox::start(SandboxConfig::new(work.join("canonical")))?;
    let module = sandbox.compile(&id, TESTKIT)?;
    // The same engine with NaNs made canonical after every float instruction (Cranelift's
    // way, before the boundary rewrite), and without canonicalization at all.
    let other = |dir: &str, nans: naac_sandbox::NanMode| -> anyhow::Result<_> {
        let mut cfg = SandboxConfig::new(work.join(dir));
        cfg.nans = nans;
        let sandbox = Sandbox::start(cfg)?;
        let module = sandbox.compile(&id, TESTKIT)?;
        Ok((sandbox, module))
    };
    let (every, every_module) = other("every-op", naac_sandbox::NanMode::EveryOp)?;
    let (fast, fast_module) = other("off", naac_sandbox::NanMode::Off)?;

    let (pi_wasm, pi_out) = best_of_3(|| time_guest(&sandbox, &module, &pi_args))?;
    let (pi_every, every_out) = best_of_3(|| time_guest(&every, &every_module, &pi_args))?;
    let (pi_fast, _) = best_of_3(|| time_guest(&fast, &fast_module, &pi_args))?;
    let (pi_native, pi_native_out) = best_of_3(|| {
        let t0 = Instant::now();
        let h = naac_guest::kernels::pi_hits(
            std::hint::black_box(1),
            std::hint::black_box(100_000_000 / scale),
        );
        Ok((t0.elapsed(), h.to_string()))
    })?;
    anyhow::ensure!(
        pi_out == pi_native_out && every_out == pi_native_out,
        "pi kernel differs: wasm {pi_out} (every op: {every_out}), native {pi_native_out}"
    );
    let (sha_wasm, sha_out) = best_of_3(|| time_guest(&sandbox, &module, &sha_args))?;
    let sha_native_run = |f: fn(u64, u64) -> [u8; 32]| {
        best_of_3(|| {
            let t0 = Instant::now();
            let h = f(std::hint::black_box(1), std::hint::black_box(sha_rounds));
            Ok((t0.elapsed(), naac_guest::hex(&h)))
        })
    };
    // Native without SHA instructions (WebAssembly has none), and `sha2` with whatever the
    // CPU offers (SHA-NI where present).
    let (sha_native, sha_native_out) = sha_native_run(naac_guest::portable::sha256_chain)?;
    let (sha_ni, sha_ni_out) = sha_native_run(naac_guest::kernels::sha256_chain)?;
    anyhow::ensure!(
        sha_out == sha_native_out && sha_out == sha_ni_out,
        "sha256 kernel differs"
    );

    let ratio = |native: Duration, wasm: Duration| native.as_secs_f64() / wasm.as_secs_f64();
    let (pi_ratio, pi_every_ratio, pi_fast_ratio) = (
        ratio(pi_native, pi_wasm),
        ratio(pi_native, pi_every),
        ratio(pi_native, pi_fast),
    );
    let (sha_ratio, sha_ni_ratio) = (ratio(sha_native, sha_wasm), ratio(sha_ni, sha_wasm));
    Ok(vec![
        Figure {
            name: "guest vs native, pi kernel",
            value: format!("{pi_ratio:.2} of native"),
            target: ">= 0.95",
            baseline: format!("every-op NaNs {pi_every_ratio:.2}"),
            ratio: Some(pi_ratio / pi_every_ratio),
            raw: json!({"native_seconds": pi_native.as_secs_f64(), "wasm_seconds": pi_wasm.as_secs_f64(), "ratio": pi_ratio, "every_op_seconds": pi_every.as_secs_f64(), "every_op_ratio": pi_every_ratio}),
        },
        Figure {
            name: "  same, NaN canonicalization off",
            value: format!("{pi_fast_ratio:.2} of native"),
            target: "(not deterministic)",
            baseline: "".into(),
            ratio: None,
            raw: json!({"wasm_seconds": pi_fast.as_secs_f64(), "ratio": pi_fast_ratio}),
        },
        Figure {
            name: "guest vs native, SHA-256 kernel",
            value: format!("{sha_ratio:.2} of native"),
            target: ">= 0.90",
            baseline: "native without SHA-NI".into(),
            ratio: None,
            raw: json!({"native_seconds": sha_native.as_secs_f64(), "wasm_seconds": sha_wasm.as_secs_f64(), "ratio": sha_ratio}),
        },
        Figure {
            name: "  same, vs native with SHA-NI",
            value: format!("{sha_ni_ratio:.2} of native"),
            target: "(shown)",
            baseline: "wasm has no SHA instructions".into(),
            ratio: None,
            raw: json!({"native_seconds": sha_ni.as_secs_f64(), "ratio": sha_ni_ratio}),
        },
    ])
}

/// Runs the testkit guest once with generous limits; returns its time and trimmed stdout.
fn time_guest(
    sandbox: &Sandbox,
    module: &naac_sandbox::Prepared,
    args: &[String],
) -> anyhow::Result<(Duration, String)> {
    let t = TaskRun {
        argv0: "testkit".into(),
        env: Vec::new(),
        args: args.to_vec(),
        limits: Limits {
            fuel: u64::MAX / 4,
            memory: 64 << 20,
            timeout_ms: 600_000,
        },
        ..TaskRun::default()
    };
    let t0 = Instant::now();
    let r = sandbox.run(module, &t, &Arc::new(AtomicBool::new(false)))?;
    let d = t0.elapsed();
    anyhow::ensure!(r.outcome == Outcome::Ok, "guest failed: {}", r.message);
    Ok((d, String::from_utf8_lossy(&r.stdout).trim().to_string()))
}

fn best_of_3(
    f: impl Fn() -> anyhow::Result<(Duration, String)>,
) -> anyhow::Result<(Duration, String)> {
    let mut best: Option<(Duration, String)> = None;
    for _ in 0..3 {
        let r = f()?;
        if best.as_ref().is_none_or(|b| r.0 < b.0) {
            best = Some(r);
        }
    }
    best.context("ran at least once")
}
