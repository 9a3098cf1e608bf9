//! Reading `policy.toml`: [`Policy::load`] and [`Policy::parse`], every value checked, with
//! errors that name the line and key and say what to write instead.

use super::text::{format_time, parse_days, parse_time};
use super::{KEYS, MAX_LABELS, MAX_PEERS, MAX_WINDOWS, Policy, PolicyError, Window, WindowAction};
use crate::diag::{FileKind, Source, file_error};
use crate::units::{parse_duration, parse_size};
use jiff::tz::TimeZone;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The keys of one `[[windows]]` table.
const WINDOW_KEYS: &[&str] = &["days", "from", "to", "action", "price"];

impl Policy {
    /// Reads the policy file; a file that does not exist means the defaults.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        match std::fs::read_to_string(path) {
            Ok(src) => Self::parse(path, &src),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::default()),
            Err(e) => Err(file_error(
                FileKind::Policy,
                path,
                format!("cannot read: {e}"),
                Some("check the file's permissions; without the file the defaults apply".into()),
            )),
        }
    }

    /// Parses policy file text; `path` only names the file in errors.
    pub fn parse(path: &Path, src: &str) -> Result<Policy, PolicyError> {
        let cx = Ctx(Source {
            kind: FileKind::Policy,
            file: path,
            src,
        });
        let doc = DeTable::parse(src).map_err(|e| {
            cx.err(
                e.span(),
                None,
                e.message().trim().to_string(),
                Some("policy.toml is TOML: key = value lines, then [[windows]] tables".into()),
            )
        })?;
        let mut p = Policy::default();
        for (key, value) in doc.get_ref().iter() {
            let k: &str = key.get_ref();
            match k {
                "max_slots" => {
                    p.max_slots =
                        Some(cx.int(value, k, 1, u32::MAX.into(), "max_slots = 4")? as u32)
                }
                "max_cpu_percent" => {
                    p.max_cpu_percent = cx.int(value, k, 1, 100, "max_cpu_percent = 50")? as u8
                }
                "idle_only" => p.idle_only = cx.boolean(value, k)?,
                "idle_after" => p.idle_after = cx.duration(value, k, "idle_after = \"5m\"")?,
                "idle_cpu_percent" => {
                    p.idle_cpu_percent = cx.int(value, k, 1, 100, "idle_cpu_percent = 25")? as u8
                }
                "windows" => p.windows = cx.windows(value)?,
                "time_zone" => {
                    let name = cx.string(value, k, "time_zone = \"Europe/Berlin\"")?;
                    if let Err(e) = TimeZone::get(name) {
                        return Err(cx.err(
                            Some(value.span()),
                            k,
                            format!("unknown time zone \"{name}\": {e}"),
                            Some(
                                "use an IANA name like \"Europe/Berlin\" or \"America/New_York\"; \
                                 leave it out to use the system's zone"
                                    .into(),
                            ),
                        ));
                    }
                    p.time_zone = Some(name.to_string());
                }
                "max_task_runtime" => {
                    let d = cx.duration(value, k, "max_task_runtime = \"2h\"")?;
                    if d.is_zero() {
                        return Err(cx.err(
                            Some(value.span()),
                            k,
                            "must be longer than zero",
                            Some("leave it out for no limit, or write e.g. \"2h\"".into()),
                        ));
                    }
                    p.max_task_runtime = Some(d);
                }
                "max_task_memory" => {
                    p.max_task_memory = Some(cx.size(value, k, "max_task_memory = \"2GiB\"")?)
                }
                "storage_quota" => {
                    p.storage_quota = cx.size(value, k, "storage_quota = \"10GiB\"")?
                }
                "min_free_disk" => {
                    p.min_free_disk = cx.size_or_zero(value, k, "min_free_disk = \"1GiB\"")?
                }
                "storage_dir" => {
                    let dir = cx.string(value, k, "storage_dir = \"/srv/naac\"")?;
                    if !Path::new(dir).is_absolute() {
                        return Err(cx.err(
                            Some(value.span()),
                            k,
                            format!("\"{dir}\" is not an absolute path"),
                            Some(
                                "write the full path, e.g. \"/srv/naac\"; leave it out to use \
                                 the data dir"
                                    .into(),
                            ),
                        ));
                    }
                    p.storage_dir = Some(PathBuf::from(dir));
                }
                "allow" => p.allow = cx.peers(value, k)?,
                "deny" => p.deny = cx.peers(value, k)?,
                "trust_tokens_from" => p.trust_tokens_from = cx.peers(value, k)?,
                "min_battery_percent" => {
                    p.min_battery_percent =
                        cx.int(value, k, 0, 100, "min_battery_percent = 20")? as u8
                }
                "on_ac_only" => p.on_ac_only = cx.boolean(value, k)?,
                "min_price" => {
                    p.min_price = cx.int(value, k, 0, i64::MAX, "min_price = 10")? as u64
                }
                "pause_grace" => p.pause_grace = cx.duration(value, k, "pause_grace = \"2m\"")?,
                "min_store_price" => {
                    p.min_store_price = cx.int(value, k, 0, i64::MAX, "min_store_price = 2")? as u64
                }
                "store_when_paused" => p.store_when_paused = cx.boolean(value, k)?,
                "labels" => p.labels = cx.labels(value, k)?,
                _ => return Err(cx.unknown_key(Some(key.span()), None, k, KEYS, "known keys")),
            }
        }
        Ok(p)
    }
}

/// A policy file being read: its [`Source`] and readers for each kind of value.
struct Ctx<'a>(Source<'a>);

impl<'a> std::ops::Deref for Ctx<'a> {
    type Target = Source<'a>;

    fn deref(&self) -> &Source<'a> {
        &self.0
    }
}

type Val<'i> = Spanned<DeValue<'i>>;

impl Ctx<'_> {
    fn int(
        &self,
        v: &Val<'_>,
        field: &str,
        lo: i64,
        hi: i64,
        example: &str,
    ) -> Result<i64, PolicyError> {
        let range_hint = || {
            if hi == i64::MAX || hi == i64::from(u32::MAX) {
                format!("use a whole number of at least {lo}, e.g. {example}")
            } else {
                format!("use a number from {lo} to {hi}, e.g. {example}")
            }
        };
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                Ok(n) => Err(self.err(
                    Some(v.span()),
                    field,
                    format!("{n} is out of range"),
                    Some(range_hint()),
                )),
                Err(_) => Err(self.err(
                    Some(v.span()),
                    field,
                    format!("{i} is out of range"),
                    Some(range_hint()),
                )),
            },
            other => Err(self.err(
                Some(v.span()),
                field,
                format!("must be a whole number, found {}", other.type_str()),
                Some(range_hint()),
            )),
        }
    }

    fn boolean(&self, v: &Val<'_>, field: &str) -> Result<bool, PolicyError> {
        match v.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            other => Err(self.err(
                Some(v.span()),
                field,
                format!("must be true or false, found {}", other.type_str()),
                Some(format!("e.g. {field} = false (no quotes)")),
            )),
        }
    }

    fn string<'v>(
        &self,
        v: &'v Val<'_>,
        field: &str,
        example: &str,
    ) -> Result<&'v str, PolicyError> {
        match v.get_ref() {
            DeValue::String(s) if !s.trim().is_empty() => Ok(s.as_ref()),
            DeValue::String(_) => Err(self.err(
                Some(v.span()),
                field,
                "is empty",
                Some(format!("e.g. {example}, or leave the key out")),
            )),
            other => Err(self.err(
                Some(v.span()),
                field,
                format!("must be a string, found {}", other.type_str()),
                Some(format!("e.g. {example}")),
            )),
        }
    }

    /// A duration string or a number of seconds, rounded to the millisecond (so that
    /// `to_toml` writes it back exactly).
    fn duration(&self, v: &Val<'_>, field: &str, example: &str) -> Result<Duration, PolicyError> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Ok(Duration::from_secs(n)),
                Err(_) => Err(format!("{i} is not a number of seconds")),
            },
            DeValue::String(s) => parse_duration(s),
            other => Err(format!(
                "must be a duration like \"5m\", found {}",
                other.type_str()
            )),
        };
        let d = parsed
            .map_err(|m| self.err(Some(v.span()), field, m, Some(format!("e.g. {example}"))))?;
        let ms = u64::try_from((d.as_nanos() + 500_000) / 1_000_000).map_err(|_| {
            self.err(
                Some(v.span()),
                field,
                "is too long",
                Some(format!("e.g. {example}")),
            )
        })?;
        Ok(Duration::from_millis(ms))
    }

    /// A size string or a number of bytes, more than zero.
    fn size(&self, v: &Val<'_>, field: &str, example: &str) -> Result<u64, PolicyError> {
        match self.size_or_zero(v, field, example)? {
            0 => Err(self.err(
                Some(v.span()),
                field,
                "must be more than zero",
                Some(format!("e.g. {example}")),
            )),
            n => Ok(n),
        }
    }

    /// A size where 0 is allowed (it turns the limit off).
    fn size_or_zero(&self, v: &Val<'_>, field: &str, example: &str) -> Result<u64, PolicyError> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| format!("{i} is not a number of bytes")),
            DeValue::String(s) => parse_size(s),
            other => Err(format!(
                "must be a size like \"2GiB\", found {}",
                other.type_str()
            )),
        };
        parsed.map_err(|m| self.err(Some(v.span()), field, m, Some(format!("e.g. {example}"))))
    }

    /// A list of labels (1 to 128 characters each), e.g. `["zone=eu", "ssd"]`.
    fn labels(&self, v: &Val<'_>, field: &str) -> Result<Vec<String>, PolicyError> {
        let hint = || Some(format!("e.g. {field} = [\"zone=eu\", \"ssd\"]"));
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.err(
                Some(v.span()),
                field,
                format!("must be a list of labels, found {}", v.get_ref().type_str()),
                hint(),
            ));
        };
        if items.len() > MAX_LABELS {
            return Err(self.err(
                Some(v.span()),
                field,
                format!("has {} labels, more than {MAX_LABELS}", items.len()),
                None,
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            match item.get_ref() {
                DeValue::String(l) if !l.trim().is_empty() && l.len() <= 128 => {
                    out.push(l.trim().to_string())
                }
                _ => {
                    return Err(self.err(
                        Some(item.span()),
                        f.as_str(),
                        "a label is a string of 1 to 128 characters",
                        hint(),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn peers(&self, v: &Val<'_>, field: &str) -> Result<Vec<String>, PolicyError> {
        let hint = || {
            Some(format!(
                "write a list of peer ids, e.g. {field} = [\"12D3KooW...\"]; \
                 naac key show prints this machine's"
            ))
        };
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.err(
                Some(v.span()),
                field,
                format!(
                    "must be a list of peer ids, found {}",
                    v.get_ref().type_str()
                ),
                hint(),
            ));
        };
        if items.len() > MAX_PEERS {
            return Err(self.err(
                Some(v.span()),
                field,
                format!("has {} entries, more than {MAX_PEERS}", items.len()),
                None,
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let DeValue::String(id) = item.get_ref() else {
                return Err(self.err(
                    Some(item.span()),
                    f.as_str(),
                    format!("must be a string, found {}", item.get_ref().type_str()),
                    hint(),
                ));
            };
            if !looks_like_peer_id(id) {
                return Err(self.err(
                    Some(item.span()),
                    f.as_str(),
                    format!("\"{id}\" is not a peer id"),
                    Some(
                        "a peer id is 40 to 60 base58 characters, e.g. 12D3KooW...; \
                         naac key show prints this machine's"
                            .into(),
                    ),
                ));
            }
            out.push(id.to_string());
        }
        Ok(out)
    }

    fn windows(&self, v: &Val<'_>) -> Result<Vec<Window>, PolicyError> {
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.err(
                Some(v.span()),
                "windows",
                format!("must be a list of tables, found {}", v.get_ref().type_str()),
                Some("write each window as a [[windows]] table".into()),
            ));
        };
        if items.len() > MAX_WINDOWS {
            return Err(self.err(
                Some(v.span()),
                "windows",
                format!("has {} windows, more than {MAX_WINDOWS}", items.len()),
                None,
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.window(i, item))
            .collect()
    }

    fn window(&self, i: usize, v: &Val<'_>) -> Result<Window, PolicyError> {
        let field = format!("windows[{i}]");
        let sub = |k: &str| format!("{field}.{k}");
        let DeValue::Table(t) = v.get_ref() else {
            return Err(self.err(
                Some(v.span()),
                field.as_str(),
                format!("must be a table, found {}", v.get_ref().type_str()),
                Some("write each window as a [[windows]] table".into()),
            ));
        };
        let (mut days, mut from, mut to, mut action, mut price) = (None, None, None, None, None);
        for (k, val) in t.iter() {
            let slot = match k.get_ref().as_ref() {
                "days" => &mut days,
                "from" => &mut from,
                "to" => &mut to,
                "action" => &mut action,
                "price" => &mut price,
                other => {
                    return Err(self.unknown_key(
                        Some(k.span()),
                        field.as_str(),
                        other,
                        WINDOW_KEYS,
                        "a window's keys are",
                    ));
                }
            };
            *slot = Some(val);
        }
        let days = match days {
            None => {
                return Err(self.err(
                    Some(v.span()),
                    field.as_str(),
                    "has no \"days\"",
                    Some("add e.g. days = \"mon-fri\" (or \"daily\")".into()),
                ));
            }
            Some(d) => {
                let s = self.string(d, &sub("days"), "days = \"mon-fri\"")?;
                parse_days(s).map_err(|m| {
                    self.err(
                        Some(d.span()),
                        sub("days").as_str(),
                        m,
                        Some(
                            "use mon, tue, wed, thu, fri, sat, sun, ranges like \"mon-fri\", \
                             lists like \"sat,sun\", or \"daily\""
                                .into(),
                        ),
                    )
                })?
            }
        };
        let time = |val: &Val<'_>, name: &str, is_to: bool| -> Result<u16, PolicyError> {
            let f = sub(name);
            let s = self.string(val, &f, &format!("{name} = \"18:00\""))?;
            parse_time(s, is_to).map_err(|m| {
                self.err(
                    Some(val.span()),
                    f.as_str(),
                    m,
                    Some(
                        "write HH:MM on a 24-hour clock, e.g. \"18:00\"; \"24:00\" ends a window \
                         at midnight"
                            .into(),
                    ),
                )
            })
        };
        let (from, to) = match (from, to) {
            (None, None) => (0, 1440),
            (Some(f), Some(t)) => {
                let (f, to) = (time(f, "from", false)?, time(t, "to", true)?);
                if f == to {
                    return Err(self.err(
                        Some(t.span()),
                        sub("to").as_str(),
                        format!(
                            "from and to are both {}, so the window is empty",
                            format_time(f)
                        ),
                        Some(
                            "for the whole day write from = \"00:00\" and to = \"24:00\", \
                             or leave both out"
                                .into(),
                        ),
                    ));
                }
                (f, to)
            }
            (Some(f), None) => {
                return Err(self.err(
                    Some(f.span()),
                    sub("to").as_str(),
                    "the window has a \"from\" but no \"to\"",
                    Some("add e.g. to = \"08:00\", or leave both out for the whole day".into()),
                ));
            }
            (None, Some(t)) => {
                return Err(self.err(
                    Some(t.span()),
                    sub("from").as_str(),
                    "the window has a \"to\" but no \"from\"",
                    Some("add e.g. from = \"18:00\", or leave both out for the whole day".into()),
                ));
            }
        };
        let action_hint =
            || Some("give each window action = \"allow\", action = \"deny\" or price = 2.0".into());
        let action = match (action, price) {
            (Some(_), Some(p)) => {
                return Err(self.err(
                    Some(p.span()),
                    sub("price").as_str(),
                    "a window takes either action or price, not both",
                    Some("make a separate window for the price".into()),
                ));
            }
            (None, None) => {
                return Err(self.err(
                    Some(v.span()),
                    field.as_str(),
                    "has no action",
                    action_hint(),
                ));
            }
            (Some(a), None) => {
                let s = self.string(a, &sub("action"), "action = \"allow\"")?;
                match s.trim().to_ascii_lowercase().as_str() {
                    "allow" => WindowAction::Allow,
                    "deny" => WindowAction::Deny,
                    _ => {
                        return Err(self.err(
                            Some(a.span()),
                            sub("action").as_str(),
                            format!("unknown action \"{s}\""),
                            action_hint(),
                        ));
                    }
                }
            }
            (None, Some(p)) => {
                let f = sub("price");
                let m = match p.get_ref() {
                    DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                        .ok()
                        .map(|n| n as f64),
                    DeValue::Float(x) => x.as_str().parse::<f64>().ok(),
                    other => {
                        return Err(self.err(
                            Some(p.span()),
                            f.as_str(),
                            format!("must be a number, found {}", other.type_str()),
                            Some("e.g. price = 2.0".into()),
                        ));
                    }
                };
                match m {
                    Some(m) if m.is_finite() && m >= 1.0 => WindowAction::Price(m),
                    _ => {
                        return Err(self.err(
                            Some(p.span()),
                            f.as_str(),
                            format!("{} is not a price multiplier", number_text(p)),
                            Some("use a number of at least 1, e.g. price = 2.0".into()),
                        ));
                    }
                }
            }
        };
        Ok(Window {
            days,
            from,
            to,
            action,
        })
    }
}

/// A number's source text, for messages.
fn number_text(v: &Val<'_>) -> String {
    match v.get_ref() {
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        other => other.type_str().to_string(),
    }
}

fn looks_like_peer_id(s: &str) -> bool {
    const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    (40..=60).contains(&s.len()) && s.chars().all(|c| BASE58.contains(c))
}
