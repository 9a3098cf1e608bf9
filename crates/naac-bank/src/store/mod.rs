//! Durable storage of ledger entries and checkpoints (SQLite, PostgreSQL).
//!
//! A [`Store`] keeps the entries in order, one row per entry with a real column per field so
//! an operator can read the books with plain SQL, and the bank's signed checkpoints keyed
//! by size. Both backends share one schema (version [`SCHEMA_VERSION`]):
//!
//! - `entries`: `seq` (primary key), `prev`, `hash`, `time_ms`, `kind` (`grant`,
//!   `transfer`, ...), `debit` and `credit` ([`Account::to_text`]: `mint`, `user:<hex>`,
//!   `escrow:<hex>`), `amount`, `job`, `task`, `record`, `memo`, `authorizer`, `auth`,
//!   `sig`, with indexes on `(debit, seq)`, `(credit, seq)` and `record`. Hashes, keys and
//!   byte strings are blobs (`bytea`), integers signed 64-bit.
//! - `checkpoints`: `size` (primary key), `root`, `head`, `time_ms`, `bank`, `sig`.
//!
//! The `hash` column is stored for the operator's convenience only: readers rebuild each
//! [`Entry`] from its columns and never look at it, so a row changed behind the bank's back
//! reads back as changed and fails the hash chain when verified. A row changed into
//! something no entry can be (an unknown kind, bad account text, a hash of the wrong
//! length) reads as [`StoreError::Corrupt`].
//!
//! Integers are unsigned in the ledger and signed 64-bit in both databases: a value above
//! `i64::MAX` is refused with [`StoreError::TooLarge`] rather than wrapped. Memos may not
//! contain NUL characters (PostgreSQL text cannot hold them; SQLite refuses them too, so
//! both backends accept the same entries).

mod postgres;
mod sqlite;

pub use self::postgres::PgStore;
pub use self::sqlite::SqliteStore;

use naac_ledger::{Account, AccountKey, Entry, Hash, Kind, TreeHead};
use naac_types::{Credits, JobId};

/// The schema version this build writes and reads (SQLite `user_version`, PostgreSQL
/// `schema_version` table). A database with a newer version is refused.
pub const SCHEMA_VERSION: i64 = 1;

/// Why a store operation failed. Messages name the database and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The entries to append do not continue the stored ones (a gap or an overlap).
    #[error(
        "ledger append out of order: the next entry must have seq {expected} but got seq \
         {got} (entries continue the stored ones, without gaps or repeats); nothing of this \
         batch was stored"
    )]
    Seq {
        /// The seq the next entry must have.
        expected: u64,
        /// The seq that was offered.
        got: u64,
    },
    /// A stored entry cannot be turned back into an [`Entry`]: the row was changed into
    /// something no entry can be.
    #[error(
        "ledger entry {seq} is corrupt in the database: {what}; the row was changed outside \
         the bank, restore the database from a backup"
    )]
    Corrupt {
        /// The row's seq.
        seq: u64,
        /// What is wrong with it.
        what: String,
    },
    /// A stored checkpoint cannot be turned back into a [`TreeHead`].
    #[error(
        "ledger checkpoint of size {size} is corrupt in the database: {what}; the row was \
         changed outside the bank, delete it or restore the database from a backup"
    )]
    CorruptCheckpoint {
        /// The row's size.
        size: u64,
        /// What is wrong with it.
        what: String,
    },
    /// A value does not fit the databases' signed 64-bit integers.
    #[error(
        "{what} is {value}, above the largest integer the ledger database holds ({max}); \
         refused rather than wrapped, nothing of this write was stored",
        max = i64::MAX
    )]
    TooLarge {
        /// Which field of which entry or checkpoint.
        what: String,
        /// The refused value.
        value: u64,
    },
    /// An entry holds something the databases cannot store.
    #[error("ledger entry {seq} cannot be stored: {what}; nothing of this write was stored")]
    Unstorable {
        /// The entry's seq.
        seq: u64,
        /// What cannot be stored.
        what: String,
    },
    /// The database was written by a newer naac.
    #[error(
        "{store} has ledger schema version {found}, newer than this naac understands \
         ({supported}); upgrade naac"
    )]
    NewerSchema {
        /// [`Store::describe`] of the database.
        store: String,
        /// The version found.
        found: i64,
        /// [`SCHEMA_VERSION`].
        supported: i64,
    },
    /// The database exists but holds no ledger and could not be given one (read-only open).
    #[error("{store} is not a naac ledger (no schema); {hint}")]
    NoSchema {
        /// [`Store::describe`] of the database.
        store: String,
        /// What to do.
        hint: &'static str,
    },
    /// A write on a store opened read-only.
    #[error("{store} was opened read-only; open it with the bank to write")]
    ReadOnly {
        /// [`Store::describe`] of the database.
        store: String,
    },
    /// An argument of [`open`] names no store.
    #[error("ledger store {url:?}: {why}")]
    Url {
        /// What was given.
        url: String,
        /// Why it names no store.
        why: String,
    },
    /// A SQLite ledger file cannot be used (missing, its directory cannot be made, ...).
    #[error("ledger database {path}: {why}")]
    File {
        /// The database file.
        path: String,
        /// What is wrong and what to do.
        why: String,
    },
    /// SQLite failed.
    #[error("ledger database {path}: {error}{hint}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The error.
        error: rusqlite::Error,
        /// What to do, when known (starts with "; ").
        hint: &'static str,
    },
    /// PostgreSQL failed.
    #[error("postgres at {at}: {detail}")]
    Postgres {
        /// The connection parameters (no password).
        at: String,
        /// The server's or the client's message, with what to do when known.
        detail: String,
        /// The error.
        error: ::postgres::Error,
    },
}

/// Durable, ordered storage of the ledger's entries and checkpoints.
///
/// Entries are appended in order (`seq` 0, 1, 2, ...) and never changed; each write is one
/// transaction, durable on disk when it returns.
pub trait Store: Send {
    /// Appends entries whose seqs continue the stored ones (`entries[0].seq == len()`,
    /// then one more each), in one transaction, durable on disk when it returns (SQLite:
    /// WAL with `synchronous = FULL`; PostgreSQL: `synchronous_commit = on`). Refuses a
    /// gap or an overlap with [`StoreError::Seq`]; a refused batch leaves nothing behind.
    /// Appending nothing is a no-op.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError>;

    /// Appends entries and stores a checkpoint in the same transaction (the bank's normal
    /// path): both or neither are stored.
    fn append_with_checkpoint(
        &mut self,
        entries: &[Entry],
        cp: &TreeHead,
    ) -> Result<(), StoreError>;

    /// How many entries are stored (one more than the last seq; 0 when empty).
    fn len(&mut self) -> Result<u64, StoreError>;

    /// Whether no entry is stored.
    fn is_empty(&mut self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Entries with seq in `from..from + limit`, in order, exactly as stored.
    fn read(&mut self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// Up to `limit` entries debiting or crediting `account`, newest first, with
    /// `seq < before` (all if `None`). Page backwards by passing the last seq returned.
    fn history(
        &mut self,
        account: &Account,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Stores a checkpoint, replacing one of the same size.
    fn put_checkpoint(&mut self, cp: &TreeHead) -> Result<(), StoreError>;

    /// The checkpoint with the largest size, if any.
    fn latest_checkpoint(&mut self) -> Result<Option<TreeHead>, StoreError>;

    /// The checkpoint with this size, if one was kept.
    fn checkpoint(&mut self, size: u64) -> Result<Option<TreeHead>, StoreError>;

    /// Human name for messages: `sqlite:/path` or `postgres:host=.. dbname=..`.
    fn describe(&self) -> String;

    /// Keeps `snap` as the one snapshot (replacing any older one). Stores that keep none
    /// (PostgreSQL: a long-running service bank replays its ledger at start) ignore it.
    fn put_snapshot(&mut self, snap: &Snapshot) -> Result<(), StoreError> {
        let _ = snap;
        Ok(())
    }

    /// The snapshot kept, if any.
    fn latest_snapshot(&mut self) -> Result<Option<Snapshot>, StoreError> {
        Ok(None)
    }
}

/// The ledger's state after its first `size` entries ([`naac_ledger::Ledger::snapshot`]),
/// signed by the bank, so a restart replays only what came after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub size: u64,
    /// The hash of entry `size - 1` (zeros for an empty ledger).
    pub head: naac_ledger::Hash,
    /// The bank's signature over [`Snapshot::signing_bytes`].
    pub sig: Vec<u8>,
    pub bytes: Vec<u8>,
}

impl Snapshot {
    /// What the bank signs: a domain tag, the size, the head and the state's BLAKE3 hash.
    pub fn signing_bytes(size: u64, head: &naac_ledger::Hash, bytes: &[u8]) -> Vec<u8> {
        let mut out = b"naac bank snapshot v1\0".to_vec();
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(head);
        out.extend_from_slice(&naac_types::ContentId::of(bytes).0);
        out
    }
}

/// Opens the store `url` names, creating its schema if missing:
///
/// - `sqlite:PATH` (also `sqlite:///abs/path`) or a plain path: a SQLite file
///   ([`SqliteStore::open`]);
/// - `postgres://...`, `postgresql://...` or a libpq `key=value` connection string such as
///   `host=127.0.0.1 port=5432 user=bank dbname=ledger`: PostgreSQL ([`PgStore::connect`]).
///
/// A path whose first word contains `=` reads as a connection string: write it
/// `sqlite:PATH`.
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(StoreError::Url {
            url: url.into(),
            why: "empty; give a file path, sqlite:PATH, postgres://... or host=... dbname=..."
                .into(),
        });
    }
    if let Some(path) = trimmed.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(StoreError::Url {
                url: url.into(),
                why: "no file path after sqlite:".into(),
            });
        }
        return Ok(Box::new(SqliteStore::open(path)?));
    }
    if trimmed.starts_with("postgres://")
        || trimmed.starts_with("postgresql://")
        || is_conninfo(trimmed)
    {
        return Ok(Box::new(PgStore::connect(trimmed)?));
    }
    Ok(Box::new(SqliteStore::open(url)?))
}

/// Whether `s` looks like a libpq `key=value ...` connection string.
fn is_conninfo(s: &str) -> bool {
    let first = s.split_whitespace().next().unwrap_or("");
    match first.split_once('=') {
        Some((key, _)) => {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        }
        None => false,
    }
}

/// Column list of `entries`, in the order [`Encoded`] and [`RawEntry`] use.
pub(crate) const ENTRY_COLUMNS: &str = "seq, prev, hash, time_ms, kind, debit, credit, amount, job, task, record, memo, \
     authorizer, auth, sig";

/// Column list of `checkpoints`.
pub(crate) const CHECKPOINT_COLUMNS: &str = "size, root, head, time_ms, bank, sig";

/// `v` as a database integer, or [`StoreError::TooLarge`] naming `what`.
pub(crate) fn to_i64(v: u64, what: impl FnOnce() -> String) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::TooLarge {
        what: what(),
        value: v,
    })
}

/// A `limit` as a database integer (saturating: nobody holds 2^63 rows).
pub(crate) fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The inclusive upper seq bound of a history query, or `None` when nothing can match.
pub(crate) fn history_bound(before: Option<u64>) -> Option<i64> {
    match before {
        None => Some(i64::MAX),
        Some(0) => None,
        Some(b) => Some(i64::try_from(b - 1).unwrap_or(i64::MAX)),
    }
}

/// The half-open seq range `from..from + limit` as database integers, or `None` when empty.
pub(crate) fn read_range(from: u64, limit: usize) -> Option<(i64, i64)> {
    let start = i64::try_from(from).ok()?;
    let end = start.saturating_add(limit_i64(limit));
    (end > start).then_some((start, end))
}

/// Checks that `entries` continue a store holding `len` entries.
pub(crate) fn check_seqs(len: u64, entries: &[Entry]) -> Result<(), StoreError> {
    for (i, e) in entries.iter().enumerate() {
        let expected = len.saturating_add(i as u64);
        if e.seq != expected {
            return Err(StoreError::Seq {
                expected,
                got: e.seq,
            });
        }
    }
    Ok(())
}

/// An entry's column values, checked to fit the databases.
pub(crate) struct Encoded<'a> {
    pub seq: i64,
    pub prev: &'a [u8],
    pub hash: Hash,
    pub time_ms: i64,
    pub kind: &'static str,
    pub debit: String,
    pub credit: String,
    pub amount: i64,
    pub job: Option<&'a [u8]>,
    pub task: Option<i64>,
    pub record: Option<&'a [u8]>,
    pub memo: &'a str,
    pub authorizer: &'a [u8],
    pub auth: &'a [u8],
    pub sig: &'a [u8],
}

impl<'a> Encoded<'a> {
    /// Encodes `e`, refusing values the databases cannot hold.
    pub fn new(e: &'a Entry) -> Result<Encoded<'a>, StoreError> {
        let seq = to_i64(e.seq, || format!("the seq of entry {}", e.seq))?;
        let time_ms = to_i64(e.time_ms, || format!("the time_ms of entry {}", e.seq))?;
        let amount = to_i64(e.amount.0, || format!("the amount of entry {}", e.seq))?;
        if e.memo.contains('\0') {
            return Err(StoreError::Unstorable {
                seq: e.seq,
                what: "its memo contains a NUL character".into(),
            });
        }
        Ok(Encoded {
            seq,
            prev: &e.prev,
            hash: e.hash(),
            time_ms,
            kind: e.kind.as_str(),
            debit: e.debit.to_text(),
            credit: e.credit.to_text(),
            amount,
            job: e.job.as_ref().map(|j| &j.0[..]),
            task: e.task.map(i64::from),
            record: e.record.as_ref().map(|r| &r[..]),
            memo: &e.memo,
            authorizer: &e.authorizer.0,
            auth: &e.auth,
            sig: &e.sig,
        })
    }
}

/// A checkpoint's column values, checked to fit the databases.
pub(crate) struct EncodedCheckpoint<'a> {
    pub size: i64,
    pub root: &'a [u8],
    pub head: &'a [u8],
    pub time_ms: i64,
    pub bank: &'a [u8],
    pub sig: &'a [u8],
}

impl<'a> EncodedCheckpoint<'a> {
    /// Encodes `cp`, refusing values the databases cannot hold.
    pub fn new(cp: &'a TreeHead) -> Result<EncodedCheckpoint<'a>, StoreError> {
        Ok(EncodedCheckpoint {
            size: to_i64(cp.size, || "the size of a checkpoint".into())?,
            root: &cp.root,
            head: &cp.head,
            time_ms: to_i64(cp.time_ms, || {
                format!("the time_ms of the checkpoint of size {}", cp.size)
            })?,
            bank: &cp.bank.0,
            sig: &cp.sig,
        })
    }
}

/// One stored entry row as the database returned it; [`RawEntry::decode`] checks it.
pub(crate) struct RawEntry<'a> {
    pub seq: i64,
    pub prev: &'a [u8],
    pub time_ms: i64,
    pub kind: &'a str,
    pub debit: &'a str,
    pub credit: &'a str,
    pub amount: i64,
    pub job: Option<&'a [u8]>,
    pub task: Option<i64>,
    pub record: Option<&'a [u8]>,
    pub memo: &'a str,
    pub authorizer: &'a [u8],
    pub auth: &'a [u8],
    pub sig: &'a [u8],
}

/// The seq to name in a [`StoreError::Corrupt`] for a row whose seq column holds `seq`.
pub(crate) fn row_seq(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

impl RawEntry<'_> {
    /// The entry this row holds, or [`StoreError::Corrupt`] saying why it holds none.
    pub fn decode(&self) -> Result<Entry, StoreError> {
        let seq = row_seq(self.seq);
        let corrupt = |what: String| StoreError::Corrupt { seq, what };
        if self.seq < 0 {
            return Err(corrupt(format!("negative seq {}", self.seq)));
        }
        let unsigned = |name: &str, v: i64| {
            u64::try_from(v).map_err(|_| corrupt(format!("negative {name} {v}")))
        };
        let account = |name: &str, text: &str| {
            Account::from_text(text)
                .ok_or_else(|| corrupt(format!("{name} {text:?} is not an account")))
        };
        let kind = [
            Kind::Grant,
            Kind::Transfer,
            Kind::Escrow,
            Kind::Settle,
            Kind::Refund,
            Kind::Register,
            Kind::Claim,
            Kind::Reject,
            Kind::Close,
            Kind::Commit,
            Kind::Storage,
        ]
        .into_iter()
        .find(|k| k.as_str() == self.kind)
        .ok_or_else(|| corrupt(format!("kind {:?} is not a kind of entry", self.kind)))?;
        let task = match self.task {
            None => None,
            Some(t) => {
                Some(u32::try_from(t).map_err(|_| corrupt(format!("task {t} is not a u32")))?)
            }
        };
        Ok(Entry {
            seq,
            prev: fixed(self.prev).ok_or_else(|| corrupt(wrong_len("prev", 32, self.prev)))?,
            time_ms: unsigned("time_ms", self.time_ms)?,
            kind,
            debit: account("debit", self.debit)?,
            credit: account("credit", self.credit)?,
            amount: Credits(unsigned("amount", self.amount)?),
            job: match self.job {
                None => None,
                Some(j) => Some(JobId(
                    fixed(j).ok_or_else(|| corrupt(wrong_len("job", 16, j)))?,
                )),
            },
            task,
            record: match self.record {
                None => None,
                Some(r) => Some(fixed(r).ok_or_else(|| corrupt(wrong_len("record", 32, r)))?),
            },
            memo: self.memo.to_owned(),
            authorizer: AccountKey(
                fixed(self.authorizer)
                    .ok_or_else(|| corrupt(wrong_len("authorizer", 32, self.authorizer)))?,
            ),
            auth: self.auth.to_vec(),
            sig: self.sig.to_vec(),
        })
    }
}

/// One stored checkpoint row as the database returned it.
pub(crate) struct RawCheckpoint<'a> {
    pub size: i64,
    pub root: &'a [u8],
    pub head: &'a [u8],
    pub time_ms: i64,
    pub bank: &'a [u8],
    pub sig: &'a [u8],
}

impl RawCheckpoint<'_> {
    /// The checkpoint this row holds, or [`StoreError::CorruptCheckpoint`].
    pub fn decode(&self) -> Result<TreeHead, StoreError> {
        let size = row_seq(self.size);
        let corrupt = |what: String| StoreError::CorruptCheckpoint { size, what };
        if self.size < 0 {
            return Err(corrupt(format!("negative size {}", self.size)));
        }
        Ok(TreeHead {
            size,
            root: fixed(self.root).ok_or_else(|| corrupt(wrong_len("root", 32, self.root)))?,
            head: fixed(self.head).ok_or_else(|| corrupt(wrong_len("head", 32, self.head)))?,
            time_ms: u64::try_from(self.time_ms)
                .map_err(|_| corrupt(format!("negative time_ms {}", self.time_ms)))?,
            bank: AccountKey(
                fixed(self.bank).ok_or_else(|| corrupt(wrong_len("bank", 32, self.bank)))?,
            ),
            sig: self.sig.to_vec(),
        })
    }
}

fn fixed<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    b.try_into().ok()
}

fn wrong_len(name: &str, want: usize, got: &[u8]) -> String {
    format!("{name} has {} bytes instead of {want}", got.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(is_conninfo("host=127.0.0.1 port=5432 dbname=x"));
        assert!(is_conninfo("dbname=ledger"));
        assert!(!is_conninfo("/var/lib/naac/ledger.db"));
        assert!(!is_conninfo("ledger.db"));
        assert!(!is_conninfo("C:=x"));
        assert!(matches!(open("  "), Err(StoreError::Url { .. })));
        assert!(matches!(open("sqlite:"), Err(StoreError::Url { .. })));
    }

    #[test]
    fn bounds() {
        assert_eq!(history_bound(None), Some(i64::MAX));
        assert_eq!(history_bound(Some(0)), None);
        assert_eq!(history_bound(Some(5)), Some(4));
        assert_eq!(history_bound(Some(u64::MAX)), Some(i64::MAX));
        assert_eq!(read_range(3, 2), Some((3, 5)));
        assert_eq!(read_range(3, 0), None);
        assert_eq!(read_range(u64::MAX, 2), None);
        assert_eq!(read_range(i64::MAX as u64, 2), None);
        assert!(matches!(check_seqs(2, &[]), Ok(())));
    }
}
