//! The GPU probe: NVIDIA GPUs through NVML (`libnvidia-ml.so.1`); none without the
//! driver.

use naac_types::host::Gpu;

/// NVIDIA GPUs through NVML; empty (logged at debug) when NVML is missing or fails. Loading
/// NVML can take a few hundred ms.
pub fn probe_gpus() -> Vec<Gpu> {
    match std::panic::catch_unwind(nvidia_gpus) {
        Ok(Ok(gpus)) => gpus,
        Ok(Err(e)) => {
            tracing::debug!("no NVIDIA GPUs: {e}");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("NVML panicked; no GPUs");
            Vec::new()
        }
    }
}

fn nvidia_gpus() -> Result<Vec<Gpu>, nvml_wrapper::error::NvmlError> {
    use nvml_wrapper::Nvml;
    // Drivers install `libnvidia-ml.so.1`; the unversioned name (nvml-wrapper's default)
    // often comes only with development packages.
    let nvml = match Nvml::builder()
        .lib_path(std::ffi::OsStr::new("libnvidia-ml.so.1"))
        .init()
    {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!("NVML (libnvidia-ml.so.1): {e}");
            Nvml::init()?
        }
    };
    let mut gpus = Vec::new();
    for i in 0..nvml.device_count()? {
        let device = match nvml.device_by_index(i) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!("NVML device {i}: {e}");
                continue;
            }
        };
        gpus.push(Gpu {
            vendor: "nvidia".into(),
            model: device.name().unwrap_or_else(|_| "unknown".into()),
            memory: device.memory_info().map_or(0, |m| m.total),
        });
    }
    Ok(gpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_no_gpus_here_and_no_panic() {
        // This machine has no NVIDIA driver; the probe must say so quietly.
        let gpus = probe_gpus();
        if std::path::Path::new("/proc/driver/nvidia").exists() {
            return;
        }
        assert!(gpus.is_empty(), "{gpus:?}");
    }
}
