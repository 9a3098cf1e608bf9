//! WASI preview 1 calls answered here rather than by wasmtime-wasi, whose bindings trap
//! when an argument is not a valid value of the call's enum type (a clock id of 99, a
//! signal of 200) where WASI documents `EINVAL`:
//!
//! - `clock_time_get` and `clock_res_get` read the task's virtual clock (what the WASI
//!   context's clocks read too) and answer `EINVAL` for an unknown clock, `EBADF` for the
//!   CPU-time clocks;
//! - `proc_raise` answers `ENOTSUP` (there are no signals here), `EINVAL` for no signal.
//!
//! Modules as other toolchains build them also link: AssemblyScript's `env.abort` ends the
//! run with its message, and its `env.seed` (for `Math.random`) comes from the task's seed,
//! so replicas agree.

use crate::checkpoint::GuestFault;
use crate::wasi::{Ctx, VirtualClock};
use wasmtime::{Caller, Linker};

const P1: &str = "wasi_snapshot_preview1";
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOTSUP: i32 = 58;

/// Shadows the calls above (after wasmtime-wasi's preview 1 is in `linker`) and adds the
/// AssemblyScript imports.
pub(crate) fn add_to_linker(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        P1,
        "clock_time_get",
        |mut caller: Caller<'_, Ctx>, id: i32, _precision: i64, out: i32| -> i32 {
            let clock = caller.data().clock.clone();
            match id {
                0 => put_u64(&mut caller, out, clock.wall_nanos()),
                1 => put_u64(&mut caller, out, clock.monotonic_nanos()),
                2 | 3 => ERRNO_BADF,
                _ => ERRNO_INVAL,
            }
        },
    )?;
    linker.func_wrap(
        P1,
        "clock_res_get",
        |mut caller: Caller<'_, Ctx>, id: i32, out: i32| -> i32 {
            match id {
                0 | 1 => put_u64(&mut caller, out, VirtualClock::RESOLUTION_NANOS),
                2 | 3 => ERRNO_BADF,
                _ => ERRNO_INVAL,
            }
        },
    )?;
    linker.func_wrap(P1, "proc_raise", |sig: i32| -> i32 {
        if (0..=30).contains(&sig) {
            ERRNO_NOTSUP
        } else {
            ERRNO_INVAL
        }
    })?;
    linker.allow_shadowing(false);
    add_assemblyscript(linker)
}

/// Writes `v` at `at` in the guest's memory: success, or `EFAULT` out of bounds.
fn put_u64(caller: &mut Caller<'_, Ctx>, at: i32, v: u64) -> i32 {
    let Some(mem) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return ERRNO_FAULT;
    };
    let at = at as u32 as usize;
    match mem.data_mut(caller).get_mut(at..at + 8) {
        Some(b) => {
            b.copy_from_slice(&v.to_le_bytes());
            ERRNO_SUCCESS
        }
        None => ERRNO_FAULT,
    }
}

/// AssemblyScript's `env` imports: `abort(message, file, line, column)` and `seed()`.
fn add_assemblyscript(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "abort",
        |mut caller: Caller<'_, Ctx>,
         msg: i32,
         file: i32,
         line: i32,
         col: i32|
         -> wasmtime::Result<()> {
            let text = |caller: &mut Caller<'_, Ctx>, ptr: i32| as_string(caller, ptr);
            let (msg, file) = (text(&mut caller, msg), text(&mut caller, file));
            Err(wasmtime::Error::new(GuestFault(format!(
                "abort: {} at {}:{line}:{col}",
                msg.unwrap_or_else(|| "(no message)".into()),
                file.unwrap_or_else(|| "?".into())
            ))))
        },
    )?;
    linker.func_wrap("env", "seed", |caller: Caller<'_, Ctx>| -> f64 {
        let s = caller.data().seed;
        // A fixed value per task, from its seed: Math.random then repeats on every host.
        (u64::from_le_bytes(s[..8].try_into().expect("8 bytes")) >> 11) as f64
    })?;
    Ok(())
}

/// An AssemblyScript string (UTF-16, its byte length in the 4 bytes before it), at most
/// 1 KiB of it.
fn as_string(caller: &mut Caller<'_, Ctx>, ptr: i32) -> Option<String> {
    let mem = caller.get_export("memory")?.into_memory()?;
    let data = mem.data(&*caller);
    let at = usize::try_from(ptr).ok()?;
    let len = u32::from_le_bytes(data.get(at.checked_sub(4)?..at)?.try_into().ok()?) as usize;
    let bytes = data.get(at..at.checked_add(len.min(1024))?)?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Some(String::from_utf16_lossy(&units))
}
