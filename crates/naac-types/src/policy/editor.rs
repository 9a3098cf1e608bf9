//! Writing policy files: [`Policy::to_toml`] (the effective policy, every key) and
//! [`set_key`] (one key changed in the owner's file with toml_edit, comments kept).

use super::text::{format_days, format_duration, format_time};
use super::{KEYS, Policy, PolicyError, WindowAction};
use crate::diag::{FileKind, Source};
use crate::units::{parse_duration, parse_size};
use jiff::tz::TimeZone;
use std::path::Path;
use std::time::Duration;

impl Policy {
    /// The effective policy as a policy file: every key, defaults filled in, unset optional
    /// keys as comments. Parses back to an equal policy.
    pub fn to_toml(&self) -> String {
        // Destructured so that a new field cannot be forgotten here.
        let Policy {
            max_slots,
            max_cpu_percent,
            idle_only,
            idle_after,
            idle_cpu_percent,
            windows,
            time_zone,
            max_task_runtime,
            max_task_memory,
            storage_quota,
            storage_dir,
            min_free_disk,
            allow,
            deny,
            trust_tokens_from,
            min_battery_percent,
            on_ac_only,
            min_price,
            pause_grace,
            min_store_price,
            store_when_paused,
            labels,
        } = self;
        let s = |v: &str| toml_edit::Value::from(v).to_string();
        let duration = |d: &Duration| s(&format_duration(*d));
        let list = |ids: &[String]| {
            toml_edit::Value::Array(ids.iter().map(String::as_str).collect()).to_string()
        };
        let either = |set: bool, yes: &str, no: &str| if set { yes } else { no }.to_string();
        let system_zone = match TimeZone::try_system()
            .ok()
            .as_ref()
            .and_then(|tz| tz.iana_name())
        {
            Some(name) => format!("the system's zone ({name})"),
            None => "the system's zone".to_string(),
        };
        // (key, value or None when not set, comment)
        let lines: [(&str, Option<String>, String); 21] = [
            (
                "max_slots",
                max_slots.map(|n| n.to_string()),
                either(max_slots.is_some(), "tasks at once", "one task per core"),
            ),
            (
                "max_cpu_percent",
                Some(max_cpu_percent.to_string()),
                "share of the whole machine naac may use".into(),
            ),
            (
                "idle_only",
                Some(idle_only.to_string()),
                "run only while the owner is away".into(),
            ),
            (
                "idle_after",
                Some(duration(idle_after)),
                "... for this long".into(),
            ),
            (
                "idle_cpu_percent",
                Some(idle_cpu_percent.to_string()),
                "other programs' cpu load above this: owner active".into(),
            ),
            (
                "time_zone",
                time_zone.as_deref().map(s),
                match time_zone {
                    Some(_) => "the windows are read in this zone".into(),
                    None => system_zone,
                },
            ),
            (
                "max_task_runtime",
                max_task_runtime.as_ref().map(duration),
                either(
                    max_task_runtime.is_some(),
                    "longest time limit a task may ask for",
                    "tasks may ask for any time limit",
                ),
            ),
            (
                "max_task_memory",
                max_task_memory.map(|m| size_value(m).to_string()),
                either(
                    max_task_memory.is_some(),
                    "largest memory limit a task may ask for",
                    "tasks may ask for any memory limit",
                ),
            ),
            (
                "storage_quota",
                Some(size_value(*storage_quota).to_string()),
                "disk for tasks' data".into(),
            ),
            (
                "storage_dir",
                storage_dir.as_ref().map(|d| s(&d.to_string_lossy())),
                either(
                    storage_dir.is_some(),
                    "where tasks' data lives",
                    "tasks' data lives in the data dir",
                ),
            ),
            (
                "min_free_disk",
                Some(size_value(*min_free_disk).to_string()),
                "pause when its disk has less free space (0: never)".into(),
            ),
            (
                "allow",
                Some(list(allow)),
                either(
                    allow.is_empty(),
                    "empty: every peer not denied",
                    "only these peers or users",
                ),
            ),
            (
                "deny",
                Some(list(deny)),
                "never these peers or users".into(),
            ),
            (
                "trust_tokens_from",
                (!trust_tokens_from.is_empty()).then(|| list(trust_tokens_from)),
                "users whose pool tokens let holders in".into(),
            ),
            (
                "min_battery_percent",
                Some(min_battery_percent.to_string()),
                "on battery, pause below this charge".into(),
            ),
            (
                "on_ac_only",
                Some(on_ac_only.to_string()),
                "pause whenever on battery".into(),
            ),
            (
                "min_price",
                Some(min_price.to_string()),
                "least credits per giga-fuel".into(),
            ),
            (
                "pause_grace",
                Some(duration(pause_grace)),
                "a task paused longer is handed back".into(),
            ),
            (
                "min_store_price",
                Some(min_store_price.to_string()),
                "least credits per GiB-day of storage".into(),
            ),
            (
                "store_when_paused",
                Some(store_when_paused.to_string()),
                either(
                    *store_when_paused,
                    "paused, still answer reads and cheap audits",
                    "paused, answer no storage requests",
                ),
            ),
            (
                "labels",
                (!labels.is_empty()).then(|| list(labels)),
                "what this host is; jobs may require labels".into(),
            ),
        ];
        let mut out =
            String::from("# naac owner policy: the effective values, defaults filled in\n\n");
        let mut line = |text: String, note: &str| out.push_str(&format!("{text:<28} # {note}\n"));
        for (key, value, note) in lines {
            match value {
                Some(v) => line(format!("{key} = {v}"), &note),
                None => line(format!("# {key}: not set"), &note),
            }
        }
        if windows.is_empty() {
            line("# windows: not set".into(), "work at any hour");
        }
        for w in windows {
            let action = match w.action {
                WindowAction::Allow => "action = \"allow\"".to_string(),
                WindowAction::Deny => "action = \"deny\"".to_string(),
                WindowAction::Price(m) => format!("price = {}", toml_edit::Value::from(m)),
            };
            out.push_str(&format!(
                "\n[[windows]]\ndays = {}\nfrom = {}\nto = {}\n{action}\n",
                s(&format_days(w.days)),
                s(&format_time(w.from)),
                s(&format_time(w.to)),
            ));
        }
        out
    }
}

/// Sets one top-level key of the policy file text `src` to `value` (parsed according to the
/// key's type; `none` or empty removes it, back to the default), keeping comments and
/// layout. Returns the new text, which has passed [`Policy::parse`]; `path` only names the
/// file in errors.
pub fn set_key(src: &str, path: &Path, key: &str, value: &str) -> Result<String, PolicyError> {
    let cx = Source {
        kind: FileKind::Policy,
        file: path,
        src,
    };
    if key == "windows" {
        return Err(cx.err(
            None,
            key,
            "windows cannot be set from the command line",
            Some("edit the file: naac policy show --path".into()),
        ));
    }
    if !KEYS.contains(&key) {
        return Err(cx.unknown_key(None, None, key, KEYS, "known keys"));
    }
    let mut doc: toml_edit::DocumentMut = src.parse().map_err(|e: toml_edit::TomlError| {
        cx.err(
            e.span(),
            None,
            e.message().trim(),
            Some("fix the file first: naac policy show --path".into()),
        )
    })?;
    let v = value.trim();
    let table = doc.as_table_mut();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        table.remove(key);
    } else {
        let new = typed_value(key, v).map_err(|(m, h)| cx.err(None, key, m, Some(h)))?;
        match table.get_mut(key) {
            Some(toml_edit::Item::Value(old)) => {
                // Keep the old value's surroundings (e.g. a trailing comment).
                let decor = old.decor().clone();
                *old = new;
                *old.decor_mut() = decor;
            }
            Some(item) => *item = toml_edit::Item::Value(new),
            None => {
                table.insert(key, toml_edit::Item::Value(new));
            }
        }
    }
    let out = doc.to_string();
    Policy::parse(path, &out).map_err(|mut e| {
        // The value given is at fault, not a line of the file the owner has.
        let ours = e
            .field
            .as_deref()
            .is_some_and(|f| f == key || f.starts_with(&format!("{key}[")));
        if ours {
            e.line = None;
        }
        e
    })?;
    Ok(out)
}

/// `value` (from the command line) as the TOML value `key` takes; Err: (message, hint).
fn typed_value(key: &str, v: &str) -> Result<toml_edit::Value, (String, String)> {
    let example = example(key);
    let hint = || format!("e.g. {example}");
    match key {
        "max_slots"
        | "max_cpu_percent"
        | "idle_cpu_percent"
        | "min_battery_percent"
        | "min_price"
        | "min_store_price" => {
            let digits = v.strip_suffix('%').unwrap_or(v).trim().replace('_', "");
            let n: i64 = digits
                .parse()
                .map_err(|_| (format!("\"{v}\" is not a whole number"), hint()))?;
            Ok(n.into())
        }
        "idle_only" | "on_ac_only" | "store_when_paused" => match v.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(true.into()),
            "false" | "no" | "off" => Ok(false.into()),
            _ => Err((
                format!("\"{v}\" is not true or false"),
                "use true or false (or yes/no, on/off)".into(),
            )),
        },
        "idle_after" | "max_task_runtime" | "pause_grace" => {
            parse_duration(v).map_err(|e| (e, hint()))?;
            Ok(v.into())
        }
        "max_task_memory" | "storage_quota" | "min_free_disk" => {
            parse_size(v).map_err(|e| (e, hint()))?;
            Ok(v.into())
        }
        "allow" | "deny" | "trust_tokens_from" | "labels" => {
            let mut a = toml_edit::Array::new();
            for id in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                a.push(id);
            }
            Ok(toml_edit::Value::Array(a))
        }
        _ => Ok(v.into()),
    }
}

/// An example value of `key`, for hints.
fn example(key: &str) -> &'static str {
    match key {
        "max_slots" => "4",
        "max_cpu_percent" => "50",
        "idle_cpu_percent" => "25",
        "min_battery_percent" => "20",
        "min_price" => "10",
        "min_store_price" => "2",
        "idle_after" => "\"5m\"",
        "max_task_runtime" => "\"2h\"",
        "pause_grace" => "\"2m\"",
        "max_task_memory" => "\"2GiB\"",
        "storage_quota" => "\"10GiB\"",
        "min_free_disk" => "\"1GiB\"",
        _ => "",
    }
}

/// A size as a TOML value the parser reads back exactly: a string in the largest binary
/// unit that divides it (`"10GiB"`), else an integer of bytes (`parse_size` goes through
/// `f64`, which cannot hold every large odd number).
fn size_value(bytes: u64) -> toml_edit::Value {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift).into();
        }
    }
    match i64::try_from(bytes) {
        Ok(n) => n.into(),
        Err(_) => format!("{bytes}B").into(),
    }
}
