//! The ledger in one SQLite file: WAL, `synchronous = FULL`, cached prepared statements,
//! every write one `BEGIN IMMEDIATE` transaction.

use super::{
    CHECKPOINT_COLUMNS, ENTRY_COLUMNS, Encoded, EncodedCheckpoint, RawCheckpoint, RawEntry,
    SCHEMA_VERSION, Snapshot, Store, StoreError, check_seqs, history_bound, limit_i64, read_range,
    row_seq,
};
use naac_ledger::{Account, Entry, TreeHead};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE entries (
    seq        INTEGER PRIMARY KEY,
    prev       BLOB    NOT NULL,
    hash       BLOB    NOT NULL,
    time_ms    INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    debit      TEXT    NOT NULL,
    credit     TEXT    NOT NULL,
    amount     INTEGER NOT NULL,
    job        BLOB,
    task       INTEGER,
    record     BLOB,
    memo       TEXT    NOT NULL,
    authorizer BLOB    NOT NULL,
    auth       BLOB    NOT NULL,
    sig        BLOB    NOT NULL
);
CREATE INDEX entries_debit ON entries (debit, seq);
CREATE INDEX entries_credit ON entries (credit, seq);
CREATE INDEX entries_record ON entries (record) WHERE record IS NOT NULL;
CREATE TABLE checkpoints (
    size    INTEGER PRIMARY KEY,
    root    BLOB    NOT NULL,
    head    BLOB    NOT NULL,
    time_ms INTEGER NOT NULL,
    bank    BLOB    NOT NULL,
    sig     BLOB    NOT NULL
);
";

/// The one snapshot of the ledger's state; added to ledgers made before it (no new
/// schema version: older naac ignores the table).
const SNAPSHOTS: &str = "
CREATE TABLE IF NOT EXISTS snapshots (
    size  INTEGER PRIMARY KEY,
    head  BLOB    NOT NULL,
    sig   BLOB    NOT NULL,
    bytes BLOB    NOT NULL
);
";

/// A ledger kept in a SQLite file.
///
/// The bank opens it with [`SqliteStore::open`]; other processes (`naac wallet`) may read
/// it at the same time through [`SqliteStore::open_read_only`] and see every committed
/// write.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
}

impl SqliteStore {
    /// Opens the ledger at `path` for reading and writing, creating the file (and its
    /// directory) and the schema if missing. Refuses a file written by a newer naac.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::File {
                path: path.display().to_string(),
                why: format!("cannot create its directory {}: {e}", dir.display()),
            })?;
        }
        let err = sqlite_error(&path);
        let conn = Connection::open(&path).map_err(&err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .map_err(&err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::File {
                path: path.display().to_string(),
                why: format!(
                    "the file system refused write-ahead logging (journal mode stays {mode}); \
                     put the ledger on a local disk"
                ),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&err)?;
        let mut store = SqliteStore {
            conn,
            path: path.clone(),
            read_only: false,
        };
        store.create_schema()?;
        Ok(store)
    }

    /// Opens an existing ledger for reading only, alongside a bank that writes it: every
    /// read sees the writes committed before it. Writes fail with
    /// [`StoreError::ReadOnly`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(StoreError::File {
                path: path.display().to_string(),
                why: "no such file; is the path right? (the bank creates its ledger when it \
                      first starts)"
                    .into(),
            });
        }
        let err = sqlite_error(&path);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
        let store = SqliteStore {
            conn,
            path: path.clone(),
            read_only: true,
        };
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                store: store.describe(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            return Err(StoreError::NoSchema {
                store: store.describe(),
                hint: "start the bank on it once to create the ledger, or check the path",
            });
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn create_schema(&mut self) -> Result<(), StoreError> {
        let err = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                store: format!("sqlite:{}", self.path.display()),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            tx.execute_batch(SCHEMA).map_err(&err)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(&err)?;
        }
        tx.execute_batch(SNAPSHOTS).map_err(&err)?;
        tx.commit().map_err(&err)
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                store: self.describe(),
            });
        }
        Ok(())
    }

    /// Appends `entries` and stores `cp` in one transaction.
    fn write(&mut self, entries: &[Entry], cp: Option<&TreeHead>) -> Result<(), StoreError> {
        self.writable()?;
        if entries.is_empty() && cp.is_none() {
            return Ok(());
        }
        let first = entries.first().map_or(0, |e| e.seq);
        check_seqs(first, entries)?;
        let rows = entries
            .iter()
            .map(Encoded::new)
            .collect::<Result<Vec<_>, _>>()?;
        let cp = cp.map(EncodedCheckpoint::new).transpose()?;

        let err = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        if !rows.is_empty() {
            let len = len_of(&tx).map_err(&err)?;
            check_seqs(stored_len(len)?, entries)?;
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO entries ({ENTRY_COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                ))
                .map_err(&err)?;
            for r in &rows {
                insert
                    .execute(params![
                        r.seq,
                        r.prev,
                        &r.hash[..],
                        r.time_ms,
                        r.kind,
                        r.debit,
                        r.credit,
                        r.amount,
                        r.job,
                        r.task,
                        r.record,
                        r.memo,
                        r.authorizer,
                        r.auth,
                        r.sig,
                    ])
                    .map_err(&err)?;
            }
        }
        if let Some(c) = cp {
            tx.prepare_cached(&format!(
                "INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (size) DO UPDATE SET root = excluded.root, head = excluded.head, \
                 time_ms = excluded.time_ms, bank = excluded.bank, sig = excluded.sig"
            ))
            .map_err(&err)?
            .execute(params![c.size, c.root, c.head, c.time_ms, c.bank, c.sig])
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Runs an entry query and decodes its rows.
    fn entries(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Entry>, StoreError> {
        let err = sqlite_error(&self.path);
        let mut stmt = self.conn.prepare_cached(sql).map_err(&err)?;
        let mut rows = stmt.query(params).map_err(&err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(&err)? {
            out.push(decode_entry(row).map_err(|e| e.into_store_error(&err))?);
        }
        Ok(out)
    }

    fn checkpoint_where(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<TreeHead>, StoreError> {
        let err = sqlite_error(&self.path);
        let mut stmt = self.conn.prepare_cached(sql).map_err(&err)?;
        let mut rows = stmt.query(params).map_err(&err)?;
        match rows.next().map_err(&err)? {
            None => Ok(None),
            Some(row) => decode_checkpoint(row)
                .map(Some)
                .map_err(|e| e.into_store_error(&err)),
        }
    }
}

impl Store for SqliteStore {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        self.write(entries, None)
    }

    fn append_with_checkpoint(
        &mut self,
        entries: &[Entry],
        cp: &TreeHead,
    ) -> Result<(), StoreError> {
        self.write(entries, Some(cp))
    }

    fn len(&mut self) -> Result<u64, StoreError> {
        let len = len_of(&self.conn).map_err(sqlite_error(&self.path))?;
        stored_len(len)
    }

    fn read(&mut self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let Some((start, end)) = read_range(from, limit) else {
            return Ok(Vec::new());
        };
        self.entries(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE seq >= ?1 AND seq < ?2 ORDER BY seq"
            ),
            params![start, end],
        )
    }

    fn history(
        &mut self,
        account: &Account,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let Some(last) = history_bound(before) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        // One backwards index range per side, merged: fast for busy accounts too.
        self.entries(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM (
                    SELECT * FROM (SELECT {ENTRY_COLUMNS} FROM entries
                        WHERE debit = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT ?3)
                    UNION ALL
                    SELECT * FROM (SELECT {ENTRY_COLUMNS} FROM entries
                        WHERE credit = ?1 AND debit <> ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT ?3)
                 ) ORDER BY seq DESC LIMIT ?3"
            ),
            params![account.to_text(), last, limit_i64(limit)],
        )
    }

    fn put_checkpoint(&mut self, cp: &TreeHead) -> Result<(), StoreError> {
        self.write(&[], Some(cp))
    }

    fn latest_checkpoint(&mut self) -> Result<Option<TreeHead>, StoreError> {
        self.checkpoint_where(
            &format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY size DESC LIMIT 1"),
            [],
        )
    }

    fn checkpoint(&mut self, size: u64) -> Result<Option<TreeHead>, StoreError> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        self.checkpoint_where(
            &format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE size = ?1"),
            [size],
        )
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn put_snapshot(&mut self, snap: &Snapshot) -> Result<(), StoreError> {
        self.writable()?;
        let err = sqlite_error(&self.path);
        let size = i64::try_from(snap.size).unwrap_or(i64::MAX);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        tx.execute("DELETE FROM snapshots", []).map_err(&err)?;
        tx.execute(
            "INSERT INTO snapshots (size, head, sig, bytes) VALUES (?1, ?2, ?3, ?4)",
            params![size, &snap.head[..], snap.sig, snap.bytes],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    fn latest_snapshot(&mut self) -> Result<Option<Snapshot>, StoreError> {
        let err = sqlite_error(&self.path);
        let row = self
            .conn
            .query_row(
                "SELECT size, head, sig, bytes FROM snapshots ORDER BY size DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(&err)?;
        let Some((size, head, sig, bytes)) = row else {
            return Ok(None);
        };
        let (Ok(size), Ok(head)) = (u64::try_from(size), <[u8; 32]>::try_from(head)) else {
            return Err(StoreError::Corrupt {
                seq: size.max(0) as u64,
                what: "the snapshot's size or head is malformed".into(),
            });
        };
        Ok(Some(Snapshot {
            size,
            head,
            sig,
            bytes,
        }))
    }
}

/// The largest stored seq, if any.
fn len_of(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT MAX(seq) FROM entries")?
        .query_row([], |r| r.get(0))
        .optional()
        .map(Option::flatten)
}

/// The entry count a largest stored seq means.
fn stored_len(max_seq: Option<i64>) -> Result<u64, StoreError> {
    match max_seq {
        None => Ok(0),
        Some(s) if s < 0 => Err(StoreError::Corrupt {
            seq: 0,
            what: format!("negative seq {s}"),
        }),
        Some(s) => Ok(row_seq(s).saturating_add(1)),
    }
}

/// Maps a SQLite error of the database at `path`, with what to do when it is clear.
fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |error| {
        let hint = match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                "; another process holds the database locked (is a second bank running on it?)"
            }
            Some(ErrorCode::CannotOpen) => {
                "; does its directory exist, and may this user write it?"
            }
            Some(ErrorCode::ReadOnly) => "; may this user write the file and its directory?",
            Some(ErrorCode::NotADatabase) => "; is this a naac ledger file?",
            Some(ErrorCode::DiskFull) => "; free some disk space",
            _ => "",
        };
        StoreError::Sqlite {
            path: path.display().to_string(),
            error,
            hint,
        }
    }
}

/// A failure decoding a row: the database's own error, or a corrupt value.
enum DecodeError {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

impl DecodeError {
    fn into_store_error(self, err: &impl Fn(rusqlite::Error) -> StoreError) -> StoreError {
        match self {
            DecodeError::Sqlite(e) => err(e),
            DecodeError::Store(e) => e,
        }
    }
}

impl From<rusqlite::Error> for DecodeError {
    fn from(e: rusqlite::Error) -> Self {
        DecodeError::Sqlite(e)
    }
}

impl From<StoreError> for DecodeError {
    fn from(e: StoreError) -> Self {
        DecodeError::Store(e)
    }
}

fn type_name(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

/// Typed access to one row's columns; a value of the wrong type is a corrupt row.
struct Cols<'r, 'a> {
    row: &'r rusqlite::Row<'a>,
    corrupt: &'r dyn Fn(String) -> StoreError,
}

impl<'r> Cols<'r, '_> {
    fn int(&self, i: usize, name: &str) -> Result<i64, DecodeError> {
        match self.row.get_ref(i)? {
            ValueRef::Integer(v) => Ok(v),
            v => Err(self.wrong(name, v, "an integer")),
        }
    }

    fn int_or_null(&self, i: usize, name: &str) -> Result<Option<i64>, DecodeError> {
        match self.row.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(v) => Ok(Some(v)),
            v => Err(self.wrong(name, v, "an integer or NULL")),
        }
    }

    fn text(&self, i: usize, name: &str) -> Result<&'r str, DecodeError> {
        match self.row.get_ref(i)? {
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map_err(|_| (self.corrupt)(format!("{name} is not UTF-8")).into()),
            v => Err(self.wrong(name, v, "text")),
        }
    }

    fn blob(&self, i: usize, name: &str) -> Result<&'r [u8], DecodeError> {
        match self.row.get_ref(i)? {
            ValueRef::Blob(b) => Ok(b),
            v => Err(self.wrong(name, v, "a blob")),
        }
    }

    fn blob_or_null(&self, i: usize, name: &str) -> Result<Option<&'r [u8]>, DecodeError> {
        match self.row.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(b) => Ok(Some(b)),
            v => Err(self.wrong(name, v, "a blob or NULL")),
        }
    }

    fn wrong(&self, name: &str, v: ValueRef<'_>, want: &str) -> DecodeError {
        (self.corrupt)(format!("{name} holds {} instead of {want}", type_name(v))).into()
    }
}

/// The entry in a row selected with [`ENTRY_COLUMNS`].
fn decode_entry(row: &rusqlite::Row<'_>) -> Result<Entry, DecodeError> {
    let seq = match row.get_ref(0)? {
        ValueRef::Integer(s) => s,
        v => {
            return Err(StoreError::Corrupt {
                seq: 0,
                what: format!("a seq holds {} instead of an integer", type_name(v)),
            }
            .into());
        }
    };
    let corrupt = |what: String| StoreError::Corrupt {
        seq: row_seq(seq),
        what,
    };
    let c = Cols {
        row,
        corrupt: &corrupt,
    };
    let raw = RawEntry {
        seq,
        prev: c.blob(1, "prev")?,
        time_ms: c.int(3, "time_ms")?,
        kind: c.text(4, "kind")?,
        debit: c.text(5, "debit")?,
        credit: c.text(6, "credit")?,
        amount: c.int(7, "amount")?,
        job: c.blob_or_null(8, "job")?,
        task: c.int_or_null(9, "task")?,
        record: c.blob_or_null(10, "record")?,
        memo: c.text(11, "memo")?,
        authorizer: c.blob(12, "authorizer")?,
        auth: c.blob(13, "auth")?,
        sig: c.blob(14, "sig")?,
    };
    Ok(raw.decode()?)
}

/// The checkpoint in a row selected with [`CHECKPOINT_COLUMNS`].
fn decode_checkpoint(row: &rusqlite::Row<'_>) -> Result<TreeHead, DecodeError> {
    let size = match row.get_ref(0)? {
        ValueRef::Integer(s) => s,
        v => {
            return Err(StoreError::CorruptCheckpoint {
                size: 0,
                what: format!("a size holds {} instead of an integer", type_name(v)),
            }
            .into());
        }
    };
    let corrupt = |what: String| StoreError::CorruptCheckpoint {
        size: row_seq(size),
        what,
    };
    let c = Cols {
        row,
        corrupt: &corrupt,
    };
    let raw = RawCheckpoint {
        size,
        root: c.blob(1, "root")?,
        head: c.blob(2, "head")?,
        time_ms: c.int(3, "time_ms")?,
        bank: c.blob(4, "bank")?,
        sig: c.blob(5, "sig")?,
    };
    Ok(raw.decode()?)
}
