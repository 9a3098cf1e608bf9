//! The power probe: on AC or battery, and the battery's charge, from sysfs
//! `power_supply` entries (the rules are in the [`device`](super) module docs).

use naac_types::host::Power;
use std::path::Path;

/// Where Linux lists power supplies.
pub const SYSFS_POWER_SUPPLY: &str = "/sys/class/power_supply";

/// Whether the host is on AC power and how full its battery is, from a sysfs
/// `power_supply` directory (normally `/sys/class/power_supply`; see the [`device`](super)
/// module docs for the rules). A missing or empty directory (servers, VMs) gives unknown
/// and no battery.
pub fn probe_power(sysfs_power_supply: &Path) -> Power {
    let Ok(entries) = std::fs::read_dir(sysfs_power_supply) else {
        return Power::default();
    };
    let read = |dir: &Path, name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let number = |dir: &Path, name: &str| read(dir, name).and_then(|s| s.parse::<u64>().ok());
    let (mut supply_seen, mut supply_online) = (false, false);
    let (mut discharging, mut charged) = (false, false);
    // Per battery: `capacity` (%), and (energy or charge) now and when full.
    let mut batteries: Vec<(Option<u64>, Option<Level>)> = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if read(&dir, "scope").as_deref() == Some("Device") {
            continue; // a peripheral's battery or supply, not the host's
        }
        let Some(kind) = read(&dir, "type") else {
            continue;
        };
        if kind == "Mains" || kind.starts_with("USB") {
            supply_seen = true;
            supply_online |= number(&dir, "online").is_some_and(|n| n != 0);
        } else if kind == "Battery" {
            if read(&dir, "present").as_deref() == Some("0") {
                continue;
            }
            match read(&dir, "status").as_deref() {
                Some("Discharging") => discharging = true,
                Some("Charging" | "Full" | "Not charging") => charged = true,
                _ => {}
            }
            let level = number(&dir, "energy_now")
                .zip(number(&dir, "energy_full"))
                .or_else(|| number(&dir, "charge_now").zip(number(&dir, "charge_full")))
                .filter(|(_, full)| *full > 0);
            batteries.push((number(&dir, "capacity"), level));
        }
    }
    let on_ac = if discharging {
        Some(false)
    } else if supply_online {
        Some(true)
    } else if batteries.is_empty() {
        // A desktop's idle USB-C port is an offline supply, yet the host runs on mains.
        None
    } else if supply_seen {
        Some(false)
    } else if charged {
        Some(true)
    } else {
        None
    };
    let percent = if !batteries.is_empty() && batteries.iter().all(|b| b.1.is_some()) {
        let (now, full) = batteries
            .iter()
            .filter_map(|b| b.1)
            .fold((0u64, 0u64), |(n, f), (bn, bf)| {
                (n.saturating_add(bn.min(bf)), f.saturating_add(bf))
            });
        Some((now as f64 * 100.0 / full as f64).round())
    } else {
        let caps: Vec<u64> = batteries.iter().filter_map(|b| b.0).collect();
        (!caps.is_empty()).then(|| (caps.iter().sum::<u64>() as f64 / caps.len() as f64).round())
    };
    Power {
        on_ac,
        battery_percent: percent.map(|p| p.clamp(0.0, 100.0) as u8),
    }
}

/// A battery's energy (µWh) or charge (µAh) now and when full.
type Level = (u64, u64);

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).expect("mkdir");
        for (name, content) in files {
            std::fs::write(dir.join(name), format!("{content}\n")).expect("write");
        }
    }

    #[test]
    fn device_power_none_on_a_server() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(probe_power(d.path()), Power::default());
        assert_eq!(probe_power(&d.path().join("missing")), Power::default());
    }

    #[test]
    fn device_power_desktop_with_idle_usb_c_port() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            &d.path().join("ucsi-source-psy-USBC000:001"),
            &[("type", "USB"), ("online", "0")],
        );
        assert_eq!(probe_power(d.path()), Power::default());
    }

    #[test]
    fn device_power_ac_online() {
        let d = tempfile::tempdir().expect("tempdir");
        write(&d.path().join("AC"), &[("type", "Mains"), ("online", "1")]);
        let p = probe_power(d.path());
        assert_eq!(p.on_ac, Some(true));
        assert_eq!(p.battery_percent, None);
    }

    #[test]
    fn device_power_battery_discharging() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            &d.path().join("BAT0"),
            &[
                ("type", "Battery"),
                ("status", "Discharging"),
                ("capacity", "15"),
            ],
        );
        assert_eq!(
            probe_power(d.path()),
            Power {
                on_ac: Some(false),
                battery_percent: Some(15)
            }
        );
        // With the charger's entry present but offline: the same.
        write(
            &d.path().join("ADP1"),
            &[("type", "Mains"), ("online", "0")],
        );
        assert_eq!(probe_power(d.path()).on_ac, Some(false));
    }

    #[test]
    fn device_power_ac_and_battery() {
        let d = tempfile::tempdir().expect("tempdir");
        write(&d.path().join("AC0"), &[("type", "Mains"), ("online", "1")]);
        write(
            &d.path().join("BAT0"),
            &[
                ("type", "Battery"),
                ("status", "Charging"),
                ("capacity", "80"),
            ],
        );
        // A wireless mouse's battery is not the host's.
        write(
            &d.path().join("hidpp_battery_0"),
            &[
                ("type", "Battery"),
                ("scope", "Device"),
                ("status", "Discharging"),
                ("capacity", "5"),
            ],
        );
        assert_eq!(
            probe_power(d.path()),
            Power {
                on_ac: Some(true),
                battery_percent: Some(80)
            }
        );
        // A charger too weak to keep up: plugged in, but the battery drains.
        write(&d.path().join("BAT0"), &[("status", "Discharging")]);
        assert_eq!(probe_power(d.path()).on_ac, Some(false));
    }

    #[test]
    fn device_power_usb_c_and_two_batteries() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            &d.path().join("ucsi-source-psy-USBC000:001"),
            &[("type", "USB"), ("online", "1")],
        );
        // 10 of 20 Wh and 30 of 60 Wh: 50% together, whatever `capacity` says.
        write(
            &d.path().join("BAT0"),
            &[
                ("type", "Battery"),
                ("status", "Charging"),
                ("capacity", "40"),
                ("energy_now", "10000000"),
                ("energy_full", "20000000"),
            ],
        );
        write(
            &d.path().join("BAT1"),
            &[
                ("type", "Battery"),
                ("status", "Not charging"),
                ("capacity", "70"),
                ("energy_now", "30000000"),
                ("energy_full", "60000000"),
            ],
        );
        assert_eq!(
            probe_power(d.path()),
            Power {
                on_ac: Some(true),
                battery_percent: Some(50)
            }
        );
    }
}
