//! What `naac run` prints when a run ends: the summary as text on stderr (the reduce or
//! last stage's stdout on stdout), or as one JSON object with `--json`.

use super::now_ms;
use anyhow::Context as _;
use naac_node::requester::Finished;

pub(super) fn report(f: &Finished, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let s = &f.summary;
    let mut out = std::io::stdout().lock();
    if json {
        let mut v = serde_json::to_value(s).context("encode summary")?;
        if let Some(stdout) = &f.reduce_stdout {
            v["reduce_stdout"] = String::from_utf8_lossy(stdout).into_owned().into();
        }
        writeln!(out, "{v}")?;
        return Ok(());
    }
    if let Some(stdout) = &f.reduce_stdout {
        out.write_all(stdout)?;
        out.flush()?;
    }
    let t = &s.tasks;
    let status = if s.interrupted {
        "interrupted"
    } else if f.success() {
        "done"
    } else {
        "finished with failures"
    };
    eprintln!(
        "naac: {status}: {}/{} tasks succeeded, {} failed, {} retried in {:.2} s on {} providers ({:.2} G fuel)",
        t.succeeded,
        t.total,
        t.failed,
        t.retried,
        s.wall_seconds,
        s.providers.len(),
        s.fuel_total as f64 / 1e9
    );
    let v = &s.verification;
    if v.runs > t.total || v.verified > 0 || !s.discrepancies.is_empty() {
        eprintln!(
            "naac: verification: {} verified, {} disagreements, {} re-checked, {} results refused; {} runs ({:.2} per task)",
            v.verified, v.disagreements, v.rechecked, v.rejected_results, v.runs, v.overhead
        );
    }
    for d in s.discrepancies.iter().take(5) {
        let sides: Vec<String> = d
            .sides
            .iter()
            .map(|side| {
                let mark = if d.accepted.as_deref() == Some(side.output.as_str()) {
                    "accepted"
                } else {
                    "rejected"
                };
                format!(
                    "{} {} from {}",
                    mark,
                    &side.output[..12],
                    side.providers
                        .iter()
                        .map(|p| short_peer(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        eprintln!("  task {} disputed: {}", d.task, sides.join("; "));
    }
    if s.discrepancies.len() > 5 {
        eprintln!(
            "  ... and {} more disputes (see summary.json)",
            s.discrepancies.len() - 5
        );
    }
    for fl in s.failures.iter().take(10) {
        match &fl.stage {
            Some(st) => eprintln!("  {st}[{}]: {}: {}", fl.task, fl.kind, fl.message),
            None => eprintln!("  task {}: {}: {}", fl.task, fl.kind, fl.message),
        }
    }
    if s.failures.len() > 10 {
        eprintln!(
            "  ... and {} more (see summary.json)",
            s.failures.len() - 10
        );
    }
    if let Some(c) = &s.cost {
        eprintln!(
            "naac: cost {} credits for {} paid results (escrow {}, {}){}",
            c.paid,
            c.settlements,
            c.escrow,
            match (&c.held_for_claims, c.returns_at_ms) {
                (Some(held), Some(at)) => format!(
                    "refunded {}; {held} held for providers' claims on runs this run did not pay or reject, the rest of it back in {}s",
                    c.refunded,
                    at.saturating_sub(now_ms()).div_ceil(1000)
                ),
                _ => format!("refunded {}", c.refunded),
            },
            if c.refused > 0 {
                format!(
                    "; {} payments refused: {}",
                    c.refused,
                    c.refusal.as_deref().unwrap_or("")
                )
            } else {
                String::new()
            }
        );
    }
    if let Some(r) = &s.reduce
        && r.outcome != "ok"
    {
        eprintln!("  reduce: {}: {}", r.outcome, r.message);
    }
    if s.interrupted {
        eprintln!(
            "naac: kept the results of the {} finished tasks",
            t.succeeded
        );
    }
    eprintln!("naac: results in {}", s.out_dir.display());
    Ok(())
}

/// The last characters of a peer id: enough to tell providers apart in a listing.
fn short_peer(p: &str) -> &str {
    &p[p.len().saturating_sub(8)..]
}
