//! Deterministic floats at (nearly) native speed: a rewrite of each module that makes NaN
//! bits canonical only where they can be observed, instead of after every float instruction.
//!
//! WebAssembly leaves one thing about floats to the CPU: the bits of a NaN that an
//! arithmetic instruction produces (x86 and Arm differ in sign and payload). Whether a value
//! *is* a NaN is fixed, and so is everything computed from that: comparisons, conversions to
//! integers (which trap), `min`/`max`, and whether later arithmetic yields a NaN. Only the
//! bits can differ, and a guest (or the host) can see a float's bits in just these places:
//!
//! - a store of the float to linear memory (`f32.store`, `f64.store`);
//! - a reinterpretation as an integer (`i32.reinterpret_f32`, `i64.reinterpret_f64`);
//! - the sign bit, through `neg`, `abs` (a NaN stays a NaN, but the bits it leaves with
//!   depend on the sign it came with) and `copysign` (which copies a NaN's sign onto a
//!   number);
//! - the host: a float passed to an imported function, returned by an exported one, or held
//!   in an exported global.
//!
//! So the rewrite inserts, before each of the first three, a few
//! instructions that replace a NaN with the canonical one (`x != x ? NaN : x`, a compare and
//! a select), and leaves arithmetic alone. Values whose bits cannot come from arithmetic are
//! not touched: loads, constants, reinterpretations of integers, integer conversions, and
//! locals only ever set from those, so a float copied from memory to memory (or an integer's
//! bits moved through a float) keeps its NaN payload exactly, as the WebAssembly spec asks.
//! A float that reaches a boundary by any other way (a parameter, a call's result, a global,
//! a block's result) is canonicalized: it may come from arithmetic, and making an arithmetic
//! NaN canonical is one of the results the spec allows.
//!
//! The host boundary is the rare case (WASI passes no floats): a module that imports a
//! function taking floats, exports one returning floats, or exports a float global gets
//! a canonicalization after every instruction of its scalar code that
//! can make a NaN (what Cranelift's own NaN canonicalization does). SIMD float arithmetic is
//! canonicalized after every instruction always: a vector's bits are observable
//! through any of the many lane and bitwise instructions, so its lanes must always be
//! canonical.
//!
//! Either way every host gets the same bits: the same module, rewritten by the same code,
//! computes the same observable values everywhere. The rewrite is versioned ([`VERSION`]) and
//! part of the compiled-module cache key; it also changes the fuel a module uses (the
//! inserted instructions are metered like the guest's own), identically on every host.

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{Instruction, ValType};
use wasmparser::{Operator, Parser, Payload, TypeRef};

/// Version of the rewrite: in the compiled-module cache key.
pub const VERSION: u32 = 1;

const F32_NAN: u32 = 0x7fc0_0000;
const F64_NAN: u64 = 0x7ff8_0000_0000_0000;

/// What the rewrite learns about a module before touching its code.
#[derive(Default)]
struct Info {
    /// Parameter and result types of each function type (`None` for non-function types).
    types: Vec<Option<(Vec<ValType>, Vec<ValType>)>>,
    /// Type index of every function, imported first.
    funcs: Vec<u32>,
    imported_funcs: u32,
    /// The host can see a float without a boundary instruction in between.
    host_sees_floats: bool,
}

fn is_float(t: &ValType) -> bool {
    matches!(t, ValType::F32 | ValType::F64)
}

impl Info {
    fn read(bytes: &[u8]) -> Result<Self, wasmparser::BinaryReaderError> {
        let mut info = Info::default();
        let mut globals: Vec<bool> = Vec::new();
        let mut exports = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::TypeSection(r) => {
                    for group in r {
                        for sub in group?.into_types() {
                            info.types.push(match &sub.composite_type.inner {
                                wasmparser::CompositeInnerType::Func(f) => Some((
                                    f.params().iter().map(val_type).collect(),
                                    f.results().iter().map(val_type).collect(),
                                )),
                                _ => None,
                            });
                        }
                    }
                }
                Payload::ImportSection(r) => {
                    for import in r.into_imports() {
                        match import?.ty {
                            TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                                info.funcs.push(t);
                                info.imported_funcs += 1;
                                if info.sig(t).0.iter().any(is_float) {
                                    info.host_sees_floats = true;
                                }
                            }
                            TypeRef::Global(g) => {
                                globals.push(matches!(
                                    g.content_type,
                                    wasmparser::ValType::F32 | wasmparser::ValType::F64
                                ));
                            }
                            _ => {}
                        }
                    }
                }
                Payload::FunctionSection(r) => {
                    for t in r {
                        info.funcs.push(t?);
                    }
                }
                Payload::GlobalSection(r) => {
                    for g in r {
                        globals.push(matches!(
                            g?.ty.content_type,
                            wasmparser::ValType::F32 | wasmparser::ValType::F64
                        ));
                    }
                }
                Payload::ExportSection(r) => {
                    for e in r {
                        let e = e?;
                        exports.push((e.kind, e.index));
                    }
                }
                _ => {}
            }
        }
        for (kind, index) in exports {
            let sees = match kind {
                wasmparser::ExternalKind::Func | wasmparser::ExternalKind::FuncExact => info
                    .funcs
                    .get(index as usize)
                    .is_some_and(|t| info.sig(*t).1.iter().any(is_float)),
                wasmparser::ExternalKind::Global => {
                    globals.get(index as usize).copied().unwrap_or(false)
                }
                // The host may call a function of an exported table.
                wasmparser::ExternalKind::Table => info
                    .types
                    .iter()
                    .flatten()
                    .any(|(_, results)| results.iter().any(is_float)),
                _ => false,
            };
            info.host_sees_floats |= sees;
        }
        Ok(info)
    }

    fn sig(&self, ty: u32) -> (&[ValType], &[ValType]) {
        match self.types.get(ty as usize) {
            Some(Some((p, r))) => (p, r),
            _ => (&[], &[]),
        }
    }
}

/// Only numeric and vector types matter here; references become a placeholder.
fn val_type(t: &wasmparser::ValType) -> ValType {
    match t {
        wasmparser::ValType::I32 => ValType::I32,
        wasmparser::ValType::I64 => ValType::I64,
        wasmparser::ValType::F32 => ValType::F32,
        wasmparser::ValType::F64 => ValType::F64,
        wasmparser::ValType::V128 => ValType::V128,
        wasmparser::ValType::Ref(_) => ValType::FUNCREF,
    }
}

/// Rewrites `bytes` so that NaN bits are canonical where observable. An error means the
/// module could not be read; it must then not run (its floats would not be deterministic).
pub fn rewrite(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let info = Info::read(bytes).map_err(|e| e.to_string())?;
    let mut r = Rewriter {
        every_op: info.host_sees_floats,
        next_func: info.imported_funcs,
        info,
    };
    let mut out = wasm_encoder::Module::new();
    r.parse_core_module(&mut out, Parser::new(0), bytes)
        .map_err(|e| e.to_string())?;
    Ok(out.finish())
}

struct Rewriter {
    info: Info,
    /// Scalar NaNs are made canonical after every instruction (the host sees floats), not
    /// only at the boundaries.
    every_op: bool,
    /// Index of the function whose body comes next.
    next_func: u32,
}

/// The float type whose NaN an instruction may produce (scalar arithmetic).
fn scalar_result(op: &Operator) -> Option<ValType> {
    use Operator::*;
    Some(match op {
        F32Add | F32Sub | F32Mul | F32Div | F32Sqrt | F32Min | F32Max | F32Ceil | F32Floor
        | F32Trunc | F32Nearest | F32DemoteF64 => ValType::F32,
        F64Add | F64Sub | F64Mul | F64Div | F64Sqrt | F64Min | F64Max | F64Ceil | F64Floor
        | F64Trunc | F64Nearest | F64PromoteF32 => ValType::F64,
        _ => return None,
    })
}

/// Lanes of a vector float instruction that may produce a NaN: `true` for f32x4.
fn vector_result(op: &Operator) -> Option<bool> {
    use Operator::*;
    Some(match op {
        F32x4Add | F32x4Sub | F32x4Mul | F32x4Div | F32x4Sqrt | F32x4Min | F32x4Max | F32x4Ceil
        | F32x4Floor | F32x4Trunc | F32x4Nearest | F32x4DemoteF64x2Zero | F32x4RelaxedMadd
        | F32x4RelaxedNmadd | F32x4RelaxedMin | F32x4RelaxedMax => true,
        F64x2Add | F64x2Sub | F64x2Mul | F64x2Div | F64x2Sqrt | F64x2Min | F64x2Max | F64x2Ceil
        | F64x2Floor | F64x2Trunc | F64x2Nearest | F64x2PromoteLowF32x4 | F64x2RelaxedMadd
        | F64x2RelaxedNmadd | F64x2RelaxedMin | F64x2RelaxedMax => false,
        _ => return None,
    })
}

/// Before which instructions the float on top of the stack is made canonical (boundary
/// mode), and its type.
fn boundary(op: &Operator) -> Option<ValType> {
    use Operator::*;
    Some(match op {
        F32Store { .. } | I32ReinterpretF32 | F32Neg | F32Abs | F32Copysign => ValType::F32,
        F64Store { .. } | I64ReinterpretF64 | F64Neg | F64Abs | F64Copysign => ValType::F64,
        _ => return None,
    })
}

/// Whether the value an instruction pushes has bits no arithmetic chose: `None` when that
/// depends on a local (`Some(l)` through [`Source::Local`]).
enum Source {
    Clean,
    Dirty,
    Local(u32),
}

/// Where the float pushed by `ops[i]` comes from, looking through `local.tee`.
fn source(ops: &[Operator], mut i: usize) -> Source {
    use Operator::*;
    loop {
        return match &ops[i] {
            F32Load { .. }
            | F64Load { .. }
            | F32Const { .. }
            | F64Const { .. }
            | F32ReinterpretI32
            | F64ReinterpretI64
            | F32ConvertI32S
            | F32ConvertI32U
            | F32ConvertI64S
            | F32ConvertI64U
            | F64ConvertI32S
            | F64ConvertI32U
            | F64ConvertI64S
            | F64ConvertI64U
            // Vector lanes are canonical already (every vector NaN is made canonical).
            | F32x4ExtractLane { .. }
            | F64x2ExtractLane { .. }
            // Their operands were made canonical first where they might not be.
            | F32Neg
            | F64Neg
            | F32Abs
            | F64Abs
            | F32Copysign
            | F64Copysign => Source::Clean,
            LocalGet { local_index } => Source::Local(*local_index),
            LocalTee { .. } if i > 0 => {
                i -= 1;
                continue;
            }
            _ => Source::Dirty,
        };
    }
}

/// Which locals only ever hold floats with chosen bits: parameters may hold anything; a
/// declared local starts at zero and stays clean while every `local.set`/`local.tee` of it
/// stores a clean value. Dirtiness spreads along `local.get` → `local.set` edges.
fn clean_locals(ops: &[Operator], params: usize, total: usize) -> Vec<bool> {
    let mut clean = vec![true; total];
    for c in clean.iter_mut().take(params) {
        *c = false;
    }
    // feeds[m] = locals set from a `local.get m`.
    let mut feeds: Vec<Vec<u32>> = vec![Vec::new(); total];
    let mut dirty = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let target = match op {
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => {
                *local_index as usize
            }
            _ => continue,
        };
        if target >= total {
            continue;
        }
        match if i == 0 {
            Source::Dirty
        } else {
            source(ops, i - 1)
        } {
            Source::Clean => {}
            Source::Dirty => dirty.push(target),
            Source::Local(m) => match feeds.get_mut(m as usize) {
                Some(f) => f.push(target as u32),
                None => dirty.push(target),
            },
        }
    }
    while let Some(l) = dirty.pop() {
        if !std::mem::replace(&mut clean[l], false) {
            continue;
        }
        dirty.extend(feeds[l].iter().map(|&t| t as usize));
    }
    clean
}

/// Scratch locals added to a function for the inserted code.
struct Scratch {
    f32: u32,
    f64: u32,
    /// The sign operand of a `copysign`, while its other operand is made canonical.
    f32_sign: u32,
    f64_sign: u32,
    v128: u32,
}

/// `x` on top of the stack becomes `x != x ? NaN : x`.
fn canonicalize(f: &mut wasm_encoder::Function, ty: ValType, s: &Scratch) {
    let (tmp, nan, ne) = match ty {
        ValType::F32 => (
            s.f32,
            Instruction::F32Const(wasm_encoder::Ieee32::new(F32_NAN)),
            Instruction::F32Ne,
        ),
        _ => (
            s.f64,
            Instruction::F64Const(wasm_encoder::Ieee64::new(F64_NAN)),
            Instruction::F64Ne,
        ),
    };
    f.instruction(&Instruction::LocalSet(tmp))
        .instruction(&nan)
        .instruction(&Instruction::LocalGet(tmp))
        .instruction(&Instruction::LocalGet(tmp))
        .instruction(&Instruction::LocalGet(tmp))
        .instruction(&ne)
        .instruction(&Instruction::Select);
}

/// Every NaN lane of the vector on top of the stack becomes the canonical NaN.
fn canonicalize_lanes(f: &mut wasm_encoder::Function, f32x4: bool, s: &Scratch) {
    let (nan, ne) = if f32x4 {
        let l = i128::from(F32_NAN);
        (l | l << 32 | l << 64 | l << 96, Instruction::F32x4Ne)
    } else {
        let l = i128::from(F64_NAN);
        (l | l << 64, Instruction::F64x2Ne)
    };
    f.instruction(&Instruction::LocalSet(s.v128))
        .instruction(&Instruction::V128Const(nan))
        .instruction(&Instruction::LocalGet(s.v128))
        .instruction(&Instruction::LocalGet(s.v128))
        .instruction(&Instruction::LocalGet(s.v128))
        .instruction(&ne)
        .instruction(&Instruction::V128Bitselect);
}

impl Reencode for Rewriter {
    type Error = std::convert::Infallible;

    fn parse_custom_section(
        &mut self,
        module: &mut wasm_encoder::Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        // Kept byte for byte: a malformed name section is no reason to refuse a module.
        module.section(&wasm_encoder::CustomSection {
            name: section.name().into(),
            data: section.data().into(),
        });
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        let index = self.next_func;
        self.next_func += 1;
        let ty = self.info.funcs.get(index as usize).copied().unwrap_or(0);
        let params = self.info.sig(ty).0.len();
        let mut declared = Vec::new();
        let mut total = params as u64;
        for pair in func.get_locals_reader()? {
            let (n, t) = pair?;
            total += u64::from(n);
            declared.push((n, self.val_type(t)?));
        }
        let mut ops = Vec::new();
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            ops.push(reader.read()?);
        }
        let total = usize::try_from(total).unwrap_or(usize::MAX).min(1 << 20);
        let boundary_mode = !self.every_op;
        let clean = if boundary_mode {
            clean_locals(&ops, params, total)
        } else {
            Vec::new()
        };
        let dirty_top = |i: usize| -> bool {
            if i == 0 {
                return true;
            }
            match source(&ops, i - 1) {
                Source::Clean => false,
                Source::Dirty => true,
                Source::Local(l) => !clean.get(l as usize).copied().unwrap_or(false),
            }
        };
        // Scratch locals only where they are used: they count against the locals limit, and
        // a module without SIMD must not start needing it.
        let scalar = ops
            .iter()
            .any(|op| boundary(op).is_some() || (!boundary_mode && scalar_result(op).is_some()));
        let base = u32::try_from(total).unwrap_or(u32::MAX);
        let s = Scratch {
            f32: base,
            f64: base + 1,
            f32_sign: base + 2,
            f64_sign: base + 3,
            v128: if scalar { base + 4 } else { base },
        };
        if scalar {
            declared.extend([
                (1, ValType::F32),
                (1, ValType::F64),
                (1, ValType::F32),
                (1, ValType::F64),
            ]);
        }
        if ops.iter().any(|op| vector_result(op).is_some()) {
            declared.push((1, ValType::V128));
        }
        let mut f = wasm_encoder::Function::new(declared);
        for (i, op) in ops.iter().enumerate() {
            if boundary_mode && let Some(ty) = boundary(op) {
                let copysign = matches!(op, Operator::F32Copysign | Operator::F64Copysign);
                // Operands of copysign: the magnitude, then the sign on top. The magnitude's
                // NaN bits pass to the result; where it came from is known when the sign was
                // pushed by an instruction that pops nothing.
                let magnitude_dirty = copysign
                    && (i < 2
                        || !matches!(
                            ops[i - 1],
                            Operator::LocalGet { .. }
                                | Operator::F32Const { .. }
                                | Operator::F64Const { .. }
                        )
                        || dirty_top(i - 1));
                if magnitude_dirty {
                    let sign = if ty == ValType::F32 {
                        s.f32_sign
                    } else {
                        s.f64_sign
                    };
                    let sign_dirty = dirty_top(i);
                    f.instruction(&Instruction::LocalSet(sign));
                    canonicalize(&mut f, ty, &s);
                    f.instruction(&Instruction::LocalGet(sign));
                    if sign_dirty {
                        canonicalize(&mut f, ty, &s);
                    }
                } else if dirty_top(i) {
                    canonicalize(&mut f, ty, &s);
                }
            }
            f.instruction(&self.instruction(op.clone())?);
            if !boundary_mode && let Some(ty) = scalar_result(op) {
                canonicalize(&mut f, ty, &s);
            }
            if let Some(f32x4) = vector_result(op) {
                canonicalize_lanes(&mut f, f32x4, &s);
            }
        }
        code.function(&f);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The operators of every function body of `bytes`, by name.
    fn bodies(bytes: &[u8]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for p in Parser::new(0).parse_all(bytes) {
            if let Payload::CodeSectionEntry(body) = p.unwrap() {
                let mut r = body.get_operators_reader().unwrap();
                let mut ops = Vec::new();
                while !r.eof() {
                    let op = format!("{:?}", r.read().unwrap());
                    ops.push(op.split([' ', '{']).next().unwrap().to_string());
                }
                out.push(ops);
            }
        }
        out
    }

    fn rewritten(wat: &str) -> Vec<Vec<String>> {
        let bytes = wat::parse_str(wat).unwrap();
        let out = rewrite(&bytes).unwrap();
        wasmparser::Validator::new().validate_all(&out).unwrap();
        bodies(&out)
    }

    const DIV: &str = "(f64.div (f64.const 0) (f64.const 0))";

    #[test]
    fn arithmetic_alone_is_left_as_it_is() {
        let b = rewritten(&format!(
            "(module (func (result i32) (f64.lt {DIV} (f64.const 1))))"
        ));
        assert!(!b[0].contains(&"F64Ne".to_string()), "{b:?}");
    }

    #[test]
    fn a_computed_float_is_made_canonical_before_a_store_and_a_loaded_one_is_not() {
        let b = rewritten(&format!(
            "(module (memory 1) (func
               (f64.store (i32.const 0) {DIV})
               (f64.store (i32.const 8) (f64.load (i32.const 16)))))"
        ));
        let nes = b[0].iter().filter(|o| *o == "F64Ne").count();
        assert_eq!(nes, 1, "{b:?}");
    }

    #[test]
    fn a_host_that_sees_floats_gets_every_operation_canonicalized() {
        // An import taking a float: the host sees its bits, so every op is canonical.
        let b = rewritten(&format!(
            r#"(module (import "env" "f" (func $f (param f64)))
                 (func (call $f {DIV})))"#
        ));
        assert!(
            b[0].windows(2)
                .any(|w| w[0] == "F64Div" && w[1] == "LocalSet"),
            "{b:?}"
        );
        // An export returning one.
        let b = rewritten(&format!(
            "(module (func (export \"g\") (result f64) {DIV}))"
        ));
        assert!(b[0].contains(&"F64Ne".to_string()), "{b:?}");
        // An exported float global.
        let b = rewritten(&format!(
            "(module (global (export \"x\") (mut f64) (f64.const 0))
               (func (global.set 0 {DIV})))"
        ));
        assert!(b[0].contains(&"F64Ne".to_string()), "{b:?}");
    }

    #[test]
    fn vector_arithmetic_is_canonicalized_after_every_instruction() {
        let b = rewritten(
            "(module (func (result v128)
               (f32x4.add (v128.const i64x2 0 0) (v128.const i64x2 0 0))))",
        );
        assert!(b[0].contains(&"V128Bitselect".to_string()), "{b:?}");
    }

    #[test]
    fn scratch_locals_only_where_used() {
        let bytes = wat::parse_str("(module (func (local i32) (drop (i32.const 1))))").unwrap();
        let out = rewrite(&bytes).unwrap();
        for p in Parser::new(0).parse_all(&out) {
            if let Payload::CodeSectionEntry(body) = p.unwrap() {
                let n: u32 = body
                    .get_locals_reader()
                    .unwrap()
                    .into_iter()
                    .map(|l| l.unwrap().0)
                    .sum();
                assert_eq!(n, 1);
            }
        }
    }

    #[test]
    fn unreadable_bytes_are_an_error() {
        assert!(rewrite(b"\0asm\x01\0\0\0\x01\xff").is_err());
        assert!(rewrite(b"not wasm").is_err());
    }
}
