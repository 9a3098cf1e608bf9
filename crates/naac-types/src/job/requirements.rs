//! A job's `[requirements]`: what a host must be to get its tasks (architecture, compute
//! score, GPUs, the owner's labels, the round trip from the requester), read and checked.

use super::{JobError, Requirements};
use crate::diag::Source;
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequirements {
    arch: Option<Spanned<String>>,
    min_score: Option<Spanned<toml::Value>>,
    gpus: Option<Spanned<i64>>,
    #[serde(default)]
    labels: Vec<Spanned<String>>,
    max_latency_ms: Option<Spanned<i64>>,
}

pub(super) fn read(
    cx: &Source<'_>,
    raw: Option<RawRequirements>,
) -> Result<Requirements, JobError> {
    let Some(r) = raw else {
        return Ok(Requirements::default());
    };
    let min_score = match &r.min_score {
        None => None,
        Some(v) => {
            let n = super::reader::number(cx, v, "requirements.min_score")?;
            if !(n.is_finite() && n > 0.0) {
                return Err(cx.err(
                    Some(v.span()),
                    "requirements.min_score".to_string(),
                    format!("{n} is not a compute score"),
                    Some("a score above 0, in giga-fuel per second per core, e.g. 10".into()),
                ));
            }
            Some(n)
        }
    };
    let gpus = match &r.gpus {
        None => 0,
        Some(g) => u32::try_from(*g.get_ref())
            .ok()
            .filter(|g| *g <= 64)
            .ok_or_else(|| {
                cx.err(
                    Some(g.span()),
                    "requirements.gpus".to_string(),
                    format!("{} is out of range", g.get_ref()),
                    Some("use a count from 0 to 64".into()),
                )
            })?,
    };
    let max_latency_ms = match &r.max_latency_ms {
        None => None,
        Some(m) => Some(
            u64::try_from(*m.get_ref())
                .ok()
                .filter(|m| (1..=60_000).contains(m))
                .ok_or_else(|| {
                    cx.err(
                        Some(m.span()),
                        "requirements.max_latency_ms".to_string(),
                        format!("{} is out of range", m.get_ref()),
                        Some("a round trip in milliseconds from 1 to 60000, e.g. 50".into()),
                    )
                })?,
        ),
    };
    let mut labels = Vec::new();
    for (i, l) in r.labels.iter().enumerate() {
        let v = l.get_ref().trim();
        if v.is_empty() || v.len() > 128 {
            return Err(cx.err(
                Some(l.span()),
                format!("requirements.labels[{i}]"),
                "a label is 1 to 128 characters",
                Some("e.g. labels = [\"zone=eu\"]".into()),
            ));
        }
        labels.push(v.to_string());
    }
    Ok(Requirements {
        arch: r.arch.map(|a| a.into_inner().trim().to_string()),
        min_score,
        gpus,
        labels,
        max_latency_ms,
    })
}
