//! What a block limits a token to, written as the vocabulary's checks; attenuation and
//! delegation.

use crate::{Key, Root, Scope, TokenError};
use biscuit_auth::builder::Term;
use biscuit_auth::{BlockBuilder, UnverifiedBiscuit};
use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

/// Most hosts one `hosts` limit names.
pub const MAX_HOSTS: usize = 64;
/// Most stored-data ids one `manifests` limit names.
pub const MAX_MANIFESTS: usize = 64;

/// A span of the day in minutes since midnight, `from` inclusive, `to` exclusive; it wraps
/// midnight when `to < from` (`22:00-06:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hours {
    pub from: u16,
    pub to: u16,
}

impl Hours {
    /// Whether `minute` (0–1439) is inside.
    pub fn covers(self, minute: u16) -> bool {
        if self.from <= self.to {
            minute >= self.from && minute < self.to
        } else {
            minute >= self.from || minute < self.to
        }
    }
}

impl std::str::FromStr for Hours {
    type Err = String;
    /// `HH:MM-HH:MM`; `24:00` may end a span.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a span of hours: use HH:MM-HH:MM, e.g. 18:00-08:00");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let minute = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
        };
        let (from, to) = (minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?);
        if from >= 1440 {
            return Err(bad());
        }
        if from == to {
            return Err(format!("{s:?} is empty: its start and end are the same"));
        }
        Ok(Hours { from, to })
    }
}

impl std::fmt::Display for Hours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hm(self.from), hm(self.to))
    }
}

/// What a block adds: every limit set here becomes a check (see the crate's vocabulary).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// On a node's API: what it may do.
    pub scope: Option<Scope>,
    /// Until when the token holds.
    pub expires: Option<SystemTime>,
    /// Only jobs whose name starts with this (API: submit and cancel; pool: run).
    pub job_name_prefix: Option<String>,
    /// Pool: at most this many tasks of the grant at once on a provider.
    pub slots: Option<u32>,
    /// Pool: only in these hours of the provider's day.
    pub hours: Option<Hours>,
    /// Pool: only on these providers (peer ids); empty: any that trusts the root.
    pub hosts: Vec<String>,
    /// Spend: at most this many µcredits escrowed with the grant in all.
    pub credits_total: Option<u64>,
    /// Spend: at most this many µcredits escrowed for one job.
    pub credits_per_job: Option<u64>,
    /// Data: only these stored-data ids (`naac://` ids, 64 hex); empty: any the root stored.
    pub manifests: Vec<String>,
    /// Data: only files whose path inside the stored tree starts with this (a directory
    /// prefix such as `"results/"`); the tree's listing stays readable.
    pub path_prefix: Option<String>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The block's checks and their parameters.
    pub(crate) fn code(&self) -> Result<(String, HashMap<String, Term>), TokenError> {
        let mut code = Vec::new();
        let mut params = HashMap::new();
        match self.scope {
            Some(Scope::Read) => code.push("check if operation(\"read\");".to_string()),
            Some(Scope::Submit) => code.push(
                "check if operation($op), $op == \"read\" || $op == \"submit\" || $op == \"cancel\";"
                    .into(),
            ),
            Some(Scope::Admin) | None => {}
        }
        if let Some(t) = self.expires {
            let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            params.insert("expires".to_string(), Term::Date(secs));
            code.push("check if time($t), $t <= {expires};".into());
        }
        if let Some(p) = &self.job_name_prefix {
            params.insert("prefix".to_string(), Term::Str(p.clone()));
            code.push(
                "check if operation(\"read\") or job_name($n), $n.starts_with({prefix});".into(),
            );
        }
        if let Some(n) = self.slots {
            params.insert("slots".to_string(), Term::Integer(i64::from(n)));
            code.push("check if slots($n), $n <= {slots};".into());
        }
        if let Some(h) = self.hours {
            params.insert("from".to_string(), Term::Integer(i64::from(h.from)));
            params.insert("to".to_string(), Term::Integer(i64::from(h.to)));
            code.push(if h.from <= h.to {
                "check if minute_of_day($m), $m >= {from}, $m < {to};".into()
            } else {
                "check if minute_of_day($m), $m >= {from} || $m < {to};".into()
            });
        }
        for (name, v, fact) in [
            ("total", self.credits_total, "spent"),
            ("per_job", self.credits_per_job, "amount"),
        ] {
            if let Some(n) = v {
                let n = i64::try_from(n).map_err(|_| {
                    TokenError::Invalid(format!("a credit limit of {n} µcredits is too large"))
                })?;
                params.insert(name.to_string(), Term::Integer(n));
                code.push(format!("check if {fact}($c), $c <= {{{name}}};"));
            }
        }
        if !self.hosts.is_empty() {
            if self.hosts.len() > MAX_HOSTS {
                return Err(TokenError::Invalid(format!(
                    "{} hosts named; a token names at most {MAX_HOSTS}",
                    self.hosts.len()
                )));
            }
            let set: BTreeSet<Term> = self.hosts.iter().map(|h| Term::Str(h.clone())).collect();
            params.insert("hosts".to_string(), Term::Set(set));
            code.push("check if host($h), {hosts}.contains($h);".into());
        }
        if !self.manifests.is_empty() {
            if self.manifests.len() > MAX_MANIFESTS {
                return Err(TokenError::Invalid(format!(
                    "{} stored-data ids named; a token names at most {MAX_MANIFESTS}",
                    self.manifests.len()
                )));
            }
            let set: BTreeSet<Term> = self
                .manifests
                .iter()
                .map(|m| Term::Str(m.to_ascii_lowercase()))
                .collect();
            params.insert("manifests".to_string(), Term::Set(set));
            code.push("check if manifest($m), {manifests}.contains($m);".into());
        }
        if let Some(p) = &self.path_prefix {
            params.insert("path_prefix".to_string(), Term::Str(p.clone()));
            code.push("check if listing(true) or path($p), $p.starts_with({path_prefix});".into());
        }
        Ok((code.join("\n"), params))
    }

    pub(crate) fn block(&self) -> Result<BlockBuilder, TokenError> {
        let (code, params) = self.code()?;
        BlockBuilder::new()
            .code_with_params(code, params, HashMap::new())
            .map_err(|e| TokenError::Invalid(format!("a block of checks: {e}")))
    }
}

fn parse(token: &str) -> Result<UnverifiedBiscuit, TokenError> {
    if token.len() > crate::MAX_TOKEN_LEN {
        return Err(TokenError::Invalid(format!(
            "the token is {} bytes; at most {} are accepted",
            token.len(),
            crate::MAX_TOKEN_LEN
        )));
    }
    UnverifiedBiscuit::from_base64(token.trim())
        .map_err(|e| TokenError::Invalid(format!("not a token ({e})")))
}

/// `token` with `limits` appended as a new block: offline, without any key (the block is
/// signed by the token's own chain). Narrows only: a verifier runs every block's checks.
pub fn attenuate(token: &str, limits: &Limits) -> Result<String, TokenError> {
    let b = parse(token)?;
    if limits.is_empty() {
        return Ok(token.trim().to_string());
    }
    b.append(limits.block()?)
        .and_then(|b| b.to_base64())
        .map_err(|e| TokenError::Invalid(format!("attenuate: {e}")))
}

/// `token` handed on by its holder `by` to the user whose key is `to`, with `limits` added:
/// a block signed by `by`'s key whose context names the new holder. Verifiers accept it only
/// if `by` is the token's holder when the block is reached (or the token is not bound).
pub fn delegate(token: &str, by: &Root, to: &Key, limits: &Limits) -> Result<String, TokenError> {
    let b = parse(token)?;
    let block = limits.block()?.context(crate::holder_context(to));
    let request = b
        .third_party_request()
        .map_err(|e| TokenError::Invalid(format!("delegate: {e}")))?;
    let signed = request
        .create_block(&by.key.private(), block)
        .and_then(|s| s.serialize())
        .map_err(|e| TokenError::Invalid(format!("delegate: {e}")))?;
    b.append_third_party(&signed)
        .and_then(|b| b.to_base64())
        .map_err(|e| TokenError::Invalid(format!("delegate: {e}")))
}
