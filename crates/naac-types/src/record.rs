//! Signed result records: what a provider vouches for when it returns a task's result.
//!
//! A [`ResultRecord`] binds the job, the task and attempt, the module, the task's inputs, the
//! output, the outcome and the fuel used. Its [`signing_bytes`](ResultRecord::signing_bytes)
//! are a fixed, versioned binary layout (no serde, so both sides agree on every byte); the
//! provider signs them with its ed25519 identity key and the requester rebuilds the record
//! from what it sent and what it received before checking the signature. A record whose
//! hashes or signature do not match is rejected.
//!
//! The output digest ([`output_digest`]) covers the outcome, the exit code, stdout and every
//! output file (sorted by name), each by its content id, so a result whose large files stay
//! with its provider (only their ids travel) has the same digest as one that carries them.
//! Stderr is diagnostics and is left out on purpose: a task resumed from a checkpoint may
//! say so on stderr and still count as the same result.

use crate::{ContentId, JobId, Outcome};

const RECORD_DOMAIN: &str = "naac result record v1";
const OUTPUT_DOMAIN: &str = "naac task output v2";
const INPUT_DOMAIN: &str = "naac task input v1";

/// What a provider signs for one finished run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultRecord {
    pub job: JobId,
    pub task: u32,
    pub attempt: u32,
    /// BLAKE3 of the module bytes.
    pub module: ContentId,
    /// [`input_digest`] of the task as assigned.
    pub input: ContentId,
    /// [`output_digest`] of the result.
    pub output: ContentId,
    pub outcome: Outcome,
    pub fuel_used: u64,
}

impl ResultRecord {
    /// The exact bytes that are signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RECORD_DOMAIN.len() + 16 + 8 + 96 + 1 + 8);
        b.extend_from_slice(RECORD_DOMAIN.as_bytes());
        b.extend_from_slice(&self.job.0);
        b.extend_from_slice(&self.task.to_le_bytes());
        b.extend_from_slice(&self.attempt.to_le_bytes());
        b.extend_from_slice(&self.module.0);
        b.extend_from_slice(&self.input.0);
        b.extend_from_slice(&self.output.0);
        b.push(outcome_code(self.outcome));
        b.extend_from_slice(&self.fuel_used.to_le_bytes());
        b
    }

    /// Reads [`ResultRecord::signing_bytes`] back: the exact inverse, so
    /// `from_signing_bytes(&r.signing_bytes()) == Some(r)`. Anything else (another length,
    /// another domain, an unknown outcome code) is `None`.
    pub fn from_signing_bytes(bytes: &[u8]) -> Option<ResultRecord> {
        let mut r = Reader(bytes.strip_prefix(RECORD_DOMAIN.as_bytes())?);
        let record = ResultRecord {
            job: JobId(r.take()?),
            task: u32::from_le_bytes(r.take()?),
            attempt: u32::from_le_bytes(r.take()?),
            module: ContentId(r.take()?),
            input: ContentId(r.take()?),
            output: ContentId(r.take()?),
            outcome: outcome_from_code(r.take::<1>()?[0])?,
            fuel_used: u64::from_le_bytes(r.take()?),
        };
        r.0.is_empty().then_some(record)
    }

    /// The record's own content id (used to name it in reports and, later, in receipts).
    pub fn id(&self) -> ContentId {
        ContentId::of(&self.signing_bytes())
    }
}

fn outcome_code(o: Outcome) -> u8 {
    match o {
        Outcome::Ok => 0,
        Outcome::Exit => 1,
        Outcome::Trap => 2,
        Outcome::OutOfFuel => 3,
        Outcome::Timeout => 4,
        Outcome::Memory => 5,
    }
}

fn outcome_from_code(c: u8) -> Option<Outcome> {
    Some(match c {
        0 => Outcome::Ok,
        1 => Outcome::Exit,
        2 => Outcome::Trap,
        3 => Outcome::OutOfFuel,
        4 => Outcome::Timeout,
        5 => Outcome::Memory,
        _ => return None,
    })
}

/// Reads fixed-size fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

fn put(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Digest of a result as replicas compare it: outcome, exit code, stdout and the output
/// files in name order. Two runs agree exactly when their digests are equal.
pub fn output_digest<'a>(
    outcome: Option<Outcome>,
    exit_code: Option<i32>,
    stdout: &[u8],
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> ContentId {
    output_digest_of(
        outcome,
        exit_code,
        &ContentId::of(stdout),
        files.into_iter().map(|(n, d)| (n, ContentId::of(d))),
    )
}

/// [`output_digest`] from the content ids of stdout and of each file.
pub fn output_digest_of<'a>(
    outcome: Option<Outcome>,
    exit_code: Option<i32>,
    stdout: &ContentId,
    files: impl IntoIterator<Item = (&'a str, ContentId)>,
) -> ContentId {
    let mut h = blake3::Hasher::new_derive_key(OUTPUT_DOMAIN);
    h.update(&[outcome.map(outcome_code).unwrap_or(255)]);
    match exit_code {
        Some(c) => h.update(&[1]).update(&c.to_le_bytes()),
        None => h.update(&[0]),
    };
    h.update(&stdout.0);
    let mut files: Vec<(&str, ContentId)> = files.into_iter().collect();
    files.sort_by(|a, b| a.0.cmp(b.0));
    h.update(&(files.len() as u64).to_le_bytes());
    for (name, id) in files {
        put(&mut h, name.as_bytes());
        h.update(&id.0);
    }
    ContentId(*h.finalize().as_bytes())
}

/// Digest of everything that defines one task: argv, stdin, input files and seed. A run
/// resumed from a checkpoint is the same task and has the same input digest.
pub fn input_digest<'a>(
    argv0: &str,
    args: impl IntoIterator<Item = &'a str>,
    stdin: Option<&ContentId>,
    inputs: impl IntoIterator<Item = (&'a str, &'a ContentId)>,
    seed: &ContentId,
) -> ContentId {
    let mut h = blake3::Hasher::new_derive_key(INPUT_DOMAIN);
    put(&mut h, argv0.as_bytes());
    let args: Vec<&str> = args.into_iter().collect();
    h.update(&(args.len() as u64).to_le_bytes());
    for a in args {
        put(&mut h, a.as_bytes());
    }
    match stdin {
        Some(id) => h.update(&[1]).update(&id.0),
        None => h.update(&[0]),
    };
    let inputs: Vec<(&str, &ContentId)> = inputs.into_iter().collect();
    h.update(&(inputs.len() as u64).to_le_bytes());
    for (name, id) in inputs {
        put(&mut h, name.as_bytes());
        h.update(&id.0);
    }
    h.update(&seed.0);
    ContentId(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ResultRecord {
        ResultRecord {
            job: JobId([7; 16]),
            task: 3,
            attempt: 1,
            module: ContentId::of(b"m"),
            input: ContentId::of(b"i"),
            output: ContentId::of(b"o"),
            outcome: Outcome::Ok,
            fuel_used: 42,
        }
    }

    #[test]
    fn every_field_changes_the_signed_bytes() {
        let base = record().signing_bytes();
        let variants = [
            ResultRecord {
                job: JobId([8; 16]),
                ..record()
            },
            ResultRecord {
                task: 4,
                ..record()
            },
            ResultRecord {
                attempt: 2,
                ..record()
            },
            ResultRecord {
                module: ContentId::of(b"x"),
                ..record()
            },
            ResultRecord {
                input: ContentId::of(b"x"),
                ..record()
            },
            ResultRecord {
                output: ContentId::of(b"x"),
                ..record()
            },
            ResultRecord {
                outcome: Outcome::Trap,
                ..record()
            },
            ResultRecord {
                fuel_used: 43,
                ..record()
            },
        ];
        for v in variants {
            assert_ne!(v.signing_bytes(), base, "{v:?}");
        }
    }

    #[test]
    fn signing_bytes_round_trip() {
        let outcomes = [
            Outcome::Ok,
            Outcome::Exit,
            Outcome::Trap,
            Outcome::OutOfFuel,
            Outcome::Timeout,
            Outcome::Memory,
        ];
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let r = ResultRecord {
                task: u32::MAX - i as u32,
                attempt: i as u32,
                outcome,
                fuel_used: u64::MAX / (i as u64 + 1),
                ..record()
            };
            let b = r.signing_bytes();
            assert_eq!(ResultRecord::from_signing_bytes(&b), Some(r));
        }
        let b = record().signing_bytes();
        // Truncated, extended, another domain, an unknown outcome: refused.
        assert_eq!(ResultRecord::from_signing_bytes(&b[..b.len() - 1]), None);
        assert_eq!(
            ResultRecord::from_signing_bytes(&[&b[..], &[0]].concat()),
            None
        );
        assert_eq!(ResultRecord::from_signing_bytes(&[]), None);
        let mut other = b.clone();
        other[0] ^= 1;
        assert_eq!(ResultRecord::from_signing_bytes(&other), None);
        let mut bad_outcome = b.clone();
        let at = b.len() - 9;
        bad_outcome[at] = 6;
        assert_eq!(ResultRecord::from_signing_bytes(&bad_outcome), None);
    }

    #[test]
    fn output_digest_is_order_independent_and_unambiguous() {
        let a = output_digest(
            Some(Outcome::Ok),
            Some(0),
            b"x",
            [("a", &b"1"[..]), ("b", b"2")],
        );
        let b = output_digest(
            Some(Outcome::Ok),
            Some(0),
            b"x",
            [("b", &b"2"[..]), ("a", b"1")],
        );
        assert_eq!(a, b);
        // Moving bytes between stdout and a file name changes the digest.
        let c = output_digest(Some(Outcome::Ok), Some(0), b"xa", [("", &b"1"[..])]);
        let d = output_digest(Some(Outcome::Ok), Some(0), b"x", [("a", &b"1"[..])]);
        assert_ne!(c, d);
        assert_ne!(
            output_digest(Some(Outcome::Ok), Some(0), b"x", []),
            output_digest(Some(Outcome::Ok), None, b"x", [])
        );
    }

    #[test]
    fn input_digest_separates_args() {
        let s = ContentId::of(b"seed");
        let a = input_digest("j", ["ab", "c"], None, [], &s);
        let b = input_digest("j", ["a", "bc"], None, [], &s);
        assert_ne!(a, b);
    }
}
