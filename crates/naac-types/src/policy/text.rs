//! The text forms of window days (`mon-fri`), clock times (`18:00`) and durations (`1h30m`)
//! in policy files, parsed and printed so that printing reads back to the same value.

use std::time::Duration;

const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `mon-fri`, `sat,sun`, `mon,wed-fri`, `fri-mon` (wraps), `daily`/`all` → a day mask.
pub(super) fn parse_days(s: &str) -> Result<u8, String> {
    let lower = s.trim().to_ascii_lowercase();
    match lower.as_str() {
        "daily" | "all" => return Ok(0x7f),
        "weekdays" => return Ok(0x1f),
        "weekends" => return Ok(0x60),
        _ => {}
    }
    let day = |name: &str| -> Result<u8, String> {
        let name = name.trim();
        DAY_NAMES
            .iter()
            .position(|full| name.len() >= 3 && full.starts_with(name))
            .map(|i| i as u8)
            .ok_or_else(|| format!("unknown day \"{name}\" in \"{s}\""))
    };
    let mut mask = 0u8;
    for part in lower.split(',') {
        if part.trim().is_empty() {
            return Err(format!("\"{s}\" has an empty entry"));
        }
        if let Some((a, b)) = part.split_once('-') {
            let (mut d, end) = (day(a)?, day(b)?);
            loop {
                mask |= 1 << d;
                if d == end {
                    break;
                }
                d = (d + 1) % 7;
            }
        } else {
            mask |= 1 << day(part)?;
        }
    }
    Ok(mask)
}

/// A day mask as text: `daily`, or runs of three or more days as ranges (`mon-fri`), others
/// listed (`sat,sun`).
pub(super) fn format_days(mask: u8) -> String {
    if mask & 0x7f == 0x7f {
        return "daily".into();
    }
    let mut parts = Vec::new();
    let mut d = 0;
    while d < 7 {
        if mask & (1 << d) == 0 {
            d += 1;
            continue;
        }
        let start = d;
        while d + 1 < 7 && mask & (1 << (d + 1)) != 0 {
            d += 1;
        }
        let name = |i: usize| &DAY_NAMES[i][..3];
        if d - start >= 2 {
            parts.push(format!("{}-{}", name(start), name(d)));
        } else {
            parts.extend((start..=d).map(|i| name(i).to_string()));
        }
        d += 1;
    }
    parts.join(",")
}

/// `HH:MM` → minutes after midnight; as an end, `24:00` and `00:00` are both midnight
/// (1440).
pub(super) fn parse_time(s: &str, is_to: bool) -> Result<u16, String> {
    let bad = || format!("\"{s}\" is not a time");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !(digits(h) && h.len() <= 2 && digits(m) && m.len() == 2) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (24, 0) if is_to => Ok(1440),
        (24, 0) => Err("\"24:00\" can only end a window; start at \"00:00\"".into()),
        (0, 0) if is_to => Ok(1440),
        (h, m) if h < 24 && m < 60 => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

pub(super) fn format_time(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// A duration as `parse_duration` reads it back exactly (to the millisecond): `5m`,
/// `1h30m`, `250ms`, `0s`.
pub(super) fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}
