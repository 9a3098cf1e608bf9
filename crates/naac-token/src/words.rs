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
    if let Some(set) = between("check if host($h), ", ".contains($h)") {
        return format!("the hosts {set}");
    }
    format!("`{body}`")
}
