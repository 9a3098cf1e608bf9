//! A job's `[verify]` table: replicas, quorum, adaptive replication, spot checks, a verifier
//! module and the reputation floor, read and checked.

use super::JobError;
use super::reader::{check_module, number};
use crate::diag::Source;
use crate::verify::{MAX_REPLICAS, VerifyPolicy};
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerify {
    pub(super) replicas: Option<Spanned<i64>>,
    pub(super) quorum: Option<Spanned<i64>>,
    pub(super) max_replicas: Option<Spanned<i64>>,
    pub(super) adaptive: Option<bool>,
    pub(super) trust_after: Option<Spanned<i64>>,
    pub(super) spot_check: Option<Spanned<toml::Value>>,
    pub(super) verifier: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) verifier_args: Vec<Spanned<String>>,
    pub(super) min_reputation: Option<Spanned<toml::Value>>,
}

pub(super) fn read(
    cx: &Source<'_>,
    dir: &Path,
    raw: Option<RawVerify>,
) -> Result<VerifyPolicy, JobError> {
    let mut p = VerifyPolicy::default();
    let Some(raw) = raw else { return Ok(p) };
    let count = |v: &Spanned<i64>, field: &str, lo: i64, hi: i64| -> Result<u32, JobError> {
        let n = *v.get_ref();
        if (lo..=hi).contains(&n) {
            Ok(n as u32)
        } else {
            Err(cx.err(
                Some(v.span()),
                format!("verify.{field}"),
                format!("{n} is out of range"),
                Some(format!("use a number from {lo} to {hi}")),
            ))
        }
    };
    let max = MAX_REPLICAS as i64;
    if let Some(r) = &raw.replicas {
        p.replicas = count(r, "replicas", 1, max)?;
    }
    p.quorum = match &raw.quorum {
        Some(q) => count(q, "quorum", 1, max)?,
        // A majority of the replicas.
        None => p.replicas / 2 + 1,
    };
    if p.quorum > p.replicas {
        let span = raw.quorum.as_ref().map(|q| q.span());
        return Err(cx.err(
            span,
            "verify.quorum".to_string(),
            format!(
                "quorum {} is more than replicas {}, so no task could be accepted",
                p.quorum, p.replicas
            ),
            Some("set quorum to at most the number of replicas".into()),
        ));
    }
    p.adaptive = raw.adaptive.unwrap_or(false);
    if let Some(t) = &raw.trust_after {
        p.trust_after = count(t, "trust_after", 1, 1_000_000)?;
    }
    if let Some(s) = &raw.spot_check {
        let v = number(cx, s, "verify.spot_check")?;
        if !(0.0..=1.0).contains(&v) {
            return Err(cx.err(
                Some(s.span()),
                "verify.spot_check".to_string(),
                format!("{v} is not a fraction"),
                Some("use a number from 0 to 1, e.g. spot_check = 0.05".into()),
            ));
        }
        p.spot_check = v;
    }
    if let Some(m) = &raw.min_reputation {
        let v = number(cx, m, "verify.min_reputation")?;
        if !(0.0..=1.0).contains(&v) {
            return Err(cx.err(
                Some(m.span()),
                "verify.min_reputation".to_string(),
                format!("{v} is not a score"),
                Some("use a number from 0 to 1; 0 uses every provider".into()),
            ));
        }
        p.min_reputation = v;
    }
    let checked = p.replicas > 1 || p.adaptive || p.spot_check > 0.0;
    p.max_replicas = match &raw.max_replicas {
        Some(m) => {
            let v = count(m, "max_replicas", 1, max)?;
            if v < p.replicas {
                return Err(cx.err(
                    Some(m.span()),
                    "verify.max_replicas".to_string(),
                    format!("max_replicas {v} is less than replicas {}", p.replicas),
                    Some("max_replicas bounds the extra copies added on disagreement".into()),
                ));
            }
            v
        }
        None if checked => (p.replicas + 2).clamp(3, MAX_REPLICAS),
        None => 1,
    };
    if let Some(v) = &raw.verifier {
        p.verifier = Some(check_module(cx, dir, v, "verify.verifier")?);
    }
    Ok(p)
}
