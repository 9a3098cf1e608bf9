//! A token in plain words, block by block: what its root grants, to whom, and each limit
//! added on the way ("may run work on hosts that trust alice; held by bob; then limited to
//! job names beginning with "render-""). Checks naac did not write are shown as Datalog.

use crate::{Key, Kind, Token};

/// One line per block, authority first. `name_of` names a key (a user id, "alice").
pub fn describe(token: &Token, name_of: &dyn Fn(&Key) -> String) -> Vec<String> {
    let blocks = token.blocks();
    let contexts = token.contexts();
    let signers = token.signers();
    let mut holder: Option<Key> = None;
    let mut out = Vec::with_capacity(blocks.len());
    for (i, src) in blocks.iter().enumerate() {
        let named = crate::holder_in(contexts.get(i).and_then(|c| c.as_deref()))
            .ok()
            .flatten();
        let mut parts = Vec::new();
        if i == 0 {
            let root = name_of(token.root());
            parts.push(match token.kind() {
                Kind::Api => format!("may use the API of the node whose key is {root}"),
                Kind::Pool => format!("may run work on hosts that trust {root}"),
                Kind::Spend => format!("may open escrows paid from {root}'s account"),
                Kind::Data => format!("may use data stored by {root}"),
            });
            if let Some(h) = named {
                parts.push(format!("held by {}", name_of(&h)));
            }
        } else if let Some(to) = named {
            let by = signers
                .get(i)
                .copied()
                .flatten()
                .map_or_else(|| "someone".to_string(), |k| name_of(&k));
            parts.push(format!("handed on by {by} to {}", name_of(&to)));
        } else if let Some(Some(k)) = signers.get(i) {
            parts.push(format!("limited by {}", name_of(k)));
        }
        if named.is_some() {
            holder = named;
        }
        let limits: Vec<String> = src
            .lines()
            .map(str::trim)
            .filter(|l| {
                l.starts_with("check ") || l.starts_with("deny ") || l.starts_with("reject ")
            })
            .map(check_words)
            .collect();
        if parts.is_empty() {
            out.push(format!("then limited to {}", limits.join(", ")));
            continue;
        }
        if !limits.is_empty() {
            parts.push(limits.join(", "));
        }
        out.push(parts.join("; "));
    }
    if token.holder().is_none() && holder.is_none() {
        out.push("whoever shows it may use it (a bearer token)".into());
    }
    out
}

/// A check naac writes, in words; any other, as itself.
fn check_words(line: &str) -> String {
    let body = line.trim_end_matches(';');
    let between = |pre: &str, post: &str| -> Option<String> {
        Some(body.strip_prefix(pre)?.strip_suffix(post)?.to_string())
    };
    if body == "check if operation(\"read\")" {
        return "reading only".into();
    }
    if body == "check if operation($op), $op == \"read\" || $op == \"submit\" || $op == \"cancel\""
    {
        return "reading, submitting and cancelling jobs".into();
    }
    if let Some(t) = between("check if time($t), $t <= ", "") {
        return format!("until {t}");
    }
    if let Some(p) = between(
        "check if operation(\"read\") or job_name($n), $n.starts_with(",
        ")",
    ) {
        return format!("job names beginning with {p}");
    }
    if let Some(n) = between("check if slots($n), $n <= ", "") {
        return format!("at most {n} tasks at once on a host");
    }
    if let Some(r) = between("check if minute_of_day($m), $m >= ", "") {
        let nums: Vec<u16> = r
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        if let [from, to] = nums[..] {
            let hours = crate::Hours { from, to };
            return format!("the hours {hours} of the host's day");
        }
    }
    if let Some(n) = between("check if spent($c), $c <= ", "") {
        return format!("at most {} credits in all", credits(&n));
    }
    if let Some(n) = between("check if amount($c), $c <= ", "") {
        return format!("at most {} credits per job", credits(&n));
    }
    if let Some(set) = between("check if host($h), ", ".contains($h)") {
        return format!("the hosts {set}");
    }
    if let Some(set) = between("check if manifest($m), ", ".contains($m)") {
        return format!("the stored data {set}");
    }
    if let Some(p) = between("check if listing(true) or path($p), $p.starts_with(", ")") {
        return format!("files whose path begins with {p}");
    }
    format!("`{body}`")
}

/// µcredits as credits ("10", "2.5").
fn credits(micro: &str) -> String {
    let Ok(n) = micro.parse::<u64>() else {
        return format!("{micro} µ");
    };
    let (whole, frac) = (n / 1_000_000, n % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    format!("{whole}.{:06}", frac)
        .trim_end_matches('0')
        .to_string()
}

/// A time as biscuit prints dates, `2027-01-06T22:33:01Z` (UTC).
pub(crate) fn parse_utc(s: &str) -> Option<std::time::SystemTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse::<i64>().ok())?
    };
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), March-based years.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}
