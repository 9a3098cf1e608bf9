//! The CPU probe: model (from `/proc/cpuinfo`; ARM cores by part id), architecture,
//! usable cores and notable instruction-set features.

use naac_types::host::Cpu;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;

/// Model, architecture, cores and features of this host's CPU (score 0: see
/// [`measure_score`](super::measure_score)).
pub fn probe_cpu() -> Cpu {
    Cpu {
        model: cpu_model(Path::new("/proc/cpuinfo")),
        arch: std::env::consts::ARCH.to_string(),
        cores: std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        features: cpu_features(),
        score: 0.0,
    }
}

/// The CPU model named in a `/proc/cpuinfo` file. On x86 the first processor's block names
/// it, and only that block is read (generating the whole file takes long on large hosts).
fn cpu_model(path: &Path) -> String {
    let Ok(file) = std::fs::File::open(path) else {
        return "unknown".into();
    };
    let mut reader = BufReader::new(file);
    let mut text = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            if let Some(m) = cpuinfo_field(&text, "model name") {
                return m;
            }
            break;
        }
        text.push_str(&line);
    }
    // No model name in the first block (ARM): the rest may hold `Hardware` or `Model`.
    let _ = reader.read_to_string(&mut text);
    parse_cpu_model(&text)
}

/// A field of `/proc/cpuinfo` text (its first occurrence), whitespace collapsed; `None`
/// when missing or empty.
fn cpuinfo_field(cpuinfo: &str, name: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
        (k.trim() == name && !v.is_empty()).then_some(v)
    })
}

/// The CPU model in `/proc/cpuinfo` text: `model name` (x86, some ARM), else a well-known
/// ARM core named by its part id, `Hardware` (the SoC, on ARM), `Model` (the board, e.g. a
/// Raspberry Pi), the raw ARM ids, or `"unknown"`.
fn parse_cpu_model(cpuinfo: &str) -> String {
    let field = |name: &str| cpuinfo_field(cpuinfo, name);
    let (implementer, part) = (field("CPU implementer"), field("CPU part"));
    let known_part = implementer
        .as_deref()
        .zip(part.as_deref())
        .and_then(|(i, p)| arm_part_name(i, p));
    if let Some(m) = field("model name")
        .or_else(|| known_part.map(str::to_string))
        .or_else(|| field("Hardware"))
        .or_else(|| field("Model"))
    {
        return m;
    }
    match (implementer, part) {
        (Some(i), Some(p)) => format!("implementer {i} part {p}"),
        (None, Some(p)) => format!("part {p}"),
        _ => "unknown".into(),
    }
}

/// Names of some common ARM cores by implementer and part id (as `lscpu` knows them).
fn arm_part_name(implementer: &str, part: &str) -> Option<&'static str> {
    let parse = |s: &str| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
    Some(match (parse(implementer)?, parse(part)?) {
        (0x41, 0xd03) => "ARM Cortex-A53",
        (0x41, 0xd04) => "ARM Cortex-A35",
        (0x41, 0xd05) => "ARM Cortex-A55",
        (0x41, 0xd07) => "ARM Cortex-A57",
        (0x41, 0xd08) => "ARM Cortex-A72",
        (0x41, 0xd09) => "ARM Cortex-A73",
        (0x41, 0xd0a) => "ARM Cortex-A75",
        (0x41, 0xd0b) => "ARM Cortex-A76",
        (0x41, 0xd0c) => "ARM Neoverse-N1",
        (0x41, 0xd0d) => "ARM Cortex-A77",
        (0x41, 0xd40) => "ARM Neoverse-V1",
        (0x41, 0xd41) => "ARM Cortex-A78",
        (0x41, 0xd44) => "ARM Cortex-X1",
        (0x41, 0xd46) => "ARM Cortex-A510",
        (0x41, 0xd47) => "ARM Cortex-A710",
        (0x41, 0xd48) => "ARM Cortex-X2",
        (0x41, 0xd49) => "ARM Neoverse-N2",
        (0x41, 0xd4b) => "ARM Cortex-A78C",
        (0x41, 0xd4f) => "ARM Neoverse-V2",
        (0x41, 0xd80) => "ARM Cortex-A520",
        (0x41, 0xd81) => "ARM Cortex-A720",
        (0x41, 0xd82) => "ARM Cortex-X4",
        (0x41, 0xd8e) => "ARM Neoverse-N3",
        (0x61, _) => "Apple",
        (0x46, 0x001) => "Fujitsu A64FX",
        (0xc0, _) => "Ampere",
        _ => return None,
    })
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
fn cpu_features() -> Vec<String> {
    let mut found = Vec::new();
    macro_rules! detect {
        ($($f:tt),*) => {$(
            if std::arch::is_x86_feature_detected!($f) {
                found.push($f.to_string());
            }
        )*};
    }
    detect!(
        "sse4.2", "avx", "avx2", "avx512f", "fma", "bmi2", "aes", "sha"
    );
    found
}

#[cfg(target_arch = "aarch64")]
fn cpu_features() -> Vec<String> {
    let mut found = Vec::new();
    macro_rules! detect {
        ($($f:tt),*) => {$(
            if std::arch::is_aarch64_feature_detected!($f) {
                found.push($f.to_string());
            }
        )*};
    }
    detect!(
        "neon", "sve", "sve2", "aes", "sha2", "sha3", "crc", "lse", "dotprod", "fp16", "i8mm",
        "bf16"
    );
    found
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
fn cpu_features() -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_cpu_of_this_machine() {
        let c = probe_cpu();
        assert!(c.cores >= 1);
        assert!(!c.model.is_empty() && c.model != "unknown", "{c:?}");
        assert_eq!(c.arch, std::env::consts::ARCH);
        #[cfg(target_arch = "x86_64")]
        assert!(c.features.iter().any(|f| f == "sse4.2"), "{c:?}");
    }

    #[test]
    fn device_cpu_model_parse() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13  64-Core Processor\nflags\t\t: fpu\n";
        assert_eq!(parse_cpu_model(x86), "AMD EPYC 7B13 64-Core Processor");
        let arm32 = "processor\t: 0\nmodel name\t: \nCPU part\t: 0xc07\n\nHardware\t: BCM2835\nRevision\t: a02082\n";
        assert_eq!(parse_cpu_model(arm32), "BCM2835");
        let graviton = "processor\t: 0\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd0c\n\n";
        assert_eq!(parse_cpu_model(graviton), "ARM Neoverse-N1");
        let pi4 = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(parse_cpu_model(pi4), "ARM Cortex-A72");
        let board =
            "processor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0x801\n\nModel\t: Some Board\n";
        assert_eq!(parse_cpu_model(board), "Some Board");
        let odd = "processor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0x801\n";
        assert_eq!(parse_cpu_model(odd), "implementer 0x51 part 0x801");
        assert_eq!(parse_cpu_model(""), "unknown");
        // Reading the file: the x86 model from the first block.
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("cpuinfo");
        std::fs::write(&f, format!("{x86}\n{x86}\n")).expect("write");
        assert_eq!(cpu_model(&f), "AMD EPYC 7B13 64-Core Processor");
        std::fs::write(&f, arm32).expect("write");
        assert_eq!(cpu_model(&f), "BCM2835");
        assert_eq!(cpu_model(&d.path().join("missing")), "unknown");
    }
}
