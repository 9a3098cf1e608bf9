//! The ledger in PostgreSQL: prepared statements, `synchronous_commit = on`, a batch of
//! entries appended with one `INSERT ... SELECT FROM unnest(...)` in one transaction.

use super::{
    CHECKPOINT_COLUMNS, ENTRY_COLUMNS, Encoded, EncodedCheckpoint, RawCheckpoint, RawEntry,
    SCHEMA_VERSION, Store, StoreError, check_seqs, history_bound, limit_i64, read_range, row_seq,
};
use ::postgres::config::Host;
use ::postgres::error::SqlState;
use ::postgres::{Client, Config, NoTls, Row, Statement};
use naac_ledger::{Account, Entry, TreeHead};
use std::time::Duration;

/// How long connecting may take when the connection string does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serializes schema creation between processes connecting at once (any constant works;
/// this one spells "naacledg").
const SCHEMA_LOCK: i64 = 0x6e61_6163_6c65_6467;

const SCHEMA: &str = "
CREATE TABLE entries (
    seq        bigint PRIMARY KEY,
    prev       bytea  NOT NULL,
    hash       bytea  NOT NULL,
    time_ms    bigint NOT NULL,
    kind       text   NOT NULL,
    debit      text   NOT NULL,
    credit     text   NOT NULL,
    amount     bigint NOT NULL,
    job        bytea,
    task       bigint,
    record     bytea,
    memo       text   NOT NULL,
    authorizer bytea  NOT NULL,
    auth       bytea  NOT NULL,
    sig        bytea  NOT NULL
);
CREATE INDEX entries_debit ON entries (debit, seq);
CREATE INDEX entries_credit ON entries (credit, seq);
CREATE INDEX entries_record ON entries (record) WHERE record IS NOT NULL;
CREATE TABLE checkpoints (
    size    bigint PRIMARY KEY,
    root    bytea  NOT NULL,
    head    bytea  NOT NULL,
    time_ms bigint NOT NULL,
    bank    bytea  NOT NULL,
    sig     bytea  NOT NULL
);
";

/// The prepared statements, made once per connection.
struct Statements {
    max_seq: Statement,
    insert: Statement,
    read: Statement,
    history: Statement,
    put_checkpoint: Statement,
    latest_checkpoint: Statement,
    checkpoint: Statement,
}

/// A ledger kept in PostgreSQL (tables `entries`, `checkpoints` and `schema_version` in
/// the first schema of the connection's `search_path`).
///
/// A lost connection (the server restarted, the backend was terminated) is made again
/// before the next operation; a read that fails because the connection just dropped is
/// tried once more on the new one. A write is not retried here: its commit may or may not
/// have happened, and the caller (the bank) re-reads the ledger and applies it again, which
/// its idempotent rules make safe.
pub struct PgStore {
    client: Client,
    /// The connection parameters, without the password.
    at: String,
    /// The connection string as given (it may hold a password: never shown), to reconnect.
    conninfo: String,
    stmts: Statements,
    /// The last operation lost the connection (the client may not have noticed yet).
    broken: bool,
}

/// Whether `e` means the connection is gone: closed, a socket error, a connection exception
/// (class 08) or the server shutting it down (57P01-57P03, e.g. a restart or
/// `pg_terminate_backend`).
fn connection_lost(e: &StoreError) -> bool {
    let StoreError::Postgres { error, .. } = e else {
        return false;
    };
    let io = std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>());
    error.is_closed()
        || io
        || error.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03")
        })
}

impl PgStore {
    /// Connects with a libpq connection string (`host=... port=... user=... dbname=...`)
    /// or URL (`postgres://user@host:port/dbname`), creating the schema if missing.
    /// Refuses a database written by a newer naac. Commits wait for the server's disk
    /// (`synchronous_commit = on`).
    pub fn connect(conninfo: &str) -> Result<PgStore, StoreError> {
        let (mut client, at) = admin(conninfo)?;
        client
            .batch_execute("SET synchronous_commit = on; SET client_min_messages = warning")
            .map_err(|e| pg_error(&at, e))?;
        create_schema(&mut client, &at)?;
        let stmts = prepare(&mut client).map_err(|e| pg_error(&at, e))?;
        Ok(PgStore {
            client,
            at,
            conninfo: conninfo.to_string(),
            stmts,
            broken: false,
        })
    }

    /// Connects again if the connection was lost.
    fn live(&mut self) -> Result<(), StoreError> {
        if self.broken || self.client.is_closed() {
            *self = PgStore::connect(&self.conninfo)?;
        }
        Ok(())
    }

    /// Notes an operation's outcome: a lost connection is made again before the next one.
    fn noting<T>(&mut self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &r
            && connection_lost(e)
        {
            self.broken = true;
        }
        r
    }

    /// Runs a read, once more on a new connection if the connection dropped under it.
    fn reading<T>(
        &mut self,
        read: impl Fn(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.live()?;
        let first = read(self);
        match self.noting(first) {
            Err(_) if self.broken => {
                self.live()?;
                let again = read(self);
                self.noting(again)
            }
            r => r,
        }
    }

    fn err(&self) -> impl Fn(::postgres::Error) -> StoreError + '_ {
        |e| pg_error(&self.at, e)
    }

    /// Appends `entries` and stores `cp` in one transaction.
    fn write(&mut self, entries: &[Entry], cp: Option<&TreeHead>) -> Result<(), StoreError> {
        self.live()?;
        let r = self.write_once(entries, cp);
        self.noting(r)
    }

    fn write_once(&mut self, entries: &[Entry], cp: Option<&TreeHead>) -> Result<(), StoreError> {
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

        let at = &self.at;
        let err = |e| pg_error(at, e);
        let stmts = &self.stmts;
        let mut tx = self.client.transaction().map_err(err)?;
        if !rows.is_empty() {
            let len = stored_len(tx.query_one(&stmts.max_seq, &[]).map_err(err)?)?;
            check_seqs(len, entries)?;
            let cols = Columns::new(&rows);
            let inserted = tx.execute(
                &stmts.insert,
                &[
                    &cols.seq,
                    &cols.prev,
                    &cols.hash,
                    &cols.time_ms,
                    &cols.kind,
                    &cols.debit,
                    &cols.credit,
                    &cols.amount,
                    &cols.job,
                    &cols.task,
                    &cols.record,
                    &cols.memo,
                    &cols.authorizer,
                    &cols.auth,
                    &cols.sig,
                ],
            );
            match inserted {
                Ok(_) => {}
                // Another writer appended between our count and our insert.
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    drop(tx);
                    let len = stored_len(self.client.query_one(&stmts.max_seq, &[]).map_err(err)?)?;
                    return Err(StoreError::Seq {
                        expected: len,
                        got: first,
                    });
                }
                Err(e) => return Err(err(e)),
            }
        }
        if let Some(c) = cp {
            tx.execute(
                &stmts.put_checkpoint,
                &[&c.size, &c.root, &c.head, &c.time_ms, &c.bank, &c.sig],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn entries(
        &mut self,
        which: fn(&Statements) -> &Statement,
        params: &[&(dyn ::postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Entry>, StoreError> {
        let rows = self.reading(|s| {
            s.client
                .query(which(&s.stmts), params)
                .map_err(|e| pg_error(&s.at, e))
        })?;
        rows.iter().map(decode_entry).collect()
    }

    fn checkpoint_where(
        &mut self,
        which: fn(&Statements) -> &Statement,
        params: &[&(dyn ::postgres::types::ToSql + Sync)],
    ) -> Result<Option<TreeHead>, StoreError> {
        let row = self.reading(|s| {
            s.client
                .query_opt(which(&s.stmts), params)
                .map_err(|e| pg_error(&s.at, e))
        })?;
        row.as_ref().map(decode_checkpoint).transpose()
    }
}

impl Store for PgStore {
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
        let row = self.reading(|s| s.client.query_one(&s.stmts.max_seq, &[]).map_err(s.err()))?;
        stored_len(row)
    }

    fn read(&mut self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let Some((start, end)) = read_range(from, limit) else {
            return Ok(Vec::new());
        };
        self.entries(|s| &s.read, &[&start, &end])
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
        let account = account.to_text();
        self.entries(|s| &s.history, &[&account, &last, &limit_i64(limit)])
    }

    fn put_checkpoint(&mut self, cp: &TreeHead) -> Result<(), StoreError> {
        self.write(&[], Some(cp))
    }

    fn latest_checkpoint(&mut self) -> Result<Option<TreeHead>, StoreError> {
        self.checkpoint_where(|s| &s.latest_checkpoint, &[])
    }

    fn checkpoint(&mut self, size: u64) -> Result<Option<TreeHead>, StoreError> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        self.checkpoint_where(|s| &s.checkpoint, &[&size])
    }

    fn describe(&self) -> String {
        format!("postgres:{}", self.at)
    }
}

/// A batch of entries as one array per column, for `unnest`.
struct Columns<'a> {
    seq: Vec<i64>,
    prev: Vec<&'a [u8]>,
    hash: Vec<&'a [u8]>,
    time_ms: Vec<i64>,
    kind: Vec<&'a str>,
    debit: Vec<&'a str>,
    credit: Vec<&'a str>,
    amount: Vec<i64>,
    job: Vec<Option<&'a [u8]>>,
    task: Vec<Option<i64>>,
    record: Vec<Option<&'a [u8]>>,
    memo: Vec<&'a str>,
    authorizer: Vec<&'a [u8]>,
    auth: Vec<&'a [u8]>,
    sig: Vec<&'a [u8]>,
}

impl<'a> Columns<'a> {
    fn new(rows: &'a [Encoded<'a>]) -> Columns<'a> {
        Columns {
            seq: rows.iter().map(|r| r.seq).collect(),
            prev: rows.iter().map(|r| r.prev).collect(),
            hash: rows.iter().map(|r| &r.hash[..]).collect(),
            time_ms: rows.iter().map(|r| r.time_ms).collect(),
            kind: rows.iter().map(|r| r.kind).collect(),
            debit: rows.iter().map(|r| r.debit.as_str()).collect(),
            credit: rows.iter().map(|r| r.credit.as_str()).collect(),
            amount: rows.iter().map(|r| r.amount).collect(),
            job: rows.iter().map(|r| r.job).collect(),
            task: rows.iter().map(|r| r.task).collect(),
            record: rows.iter().map(|r| r.record).collect(),
            memo: rows.iter().map(|r| r.memo).collect(),
            authorizer: rows.iter().map(|r| r.authorizer).collect(),
            auth: rows.iter().map(|r| r.auth).collect(),
            sig: rows.iter().map(|r| r.sig).collect(),
        }
    }
}

/// Creates the tables if missing and checks the schema version, holding a lock so two
/// processes connecting to a new database at once do not both create them.
fn create_schema(client: &mut Client, at: &str) -> Result<(), StoreError> {
    let err = |e| pg_error(at, e);
    let mut tx = client.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .map_err(err)?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .map_err(err)?
        .get(0);
    let version: Option<i32> = if exists {
        tx.query_one("SELECT max(version) FROM schema_version", &[])
            .map_err(err)?
            .get(0)
    } else {
        None
    };
    match version.map(i64::from) {
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StoreError::NewerSchema {
                store: format!("postgres:{at}"),
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
        Some(_) => {}
        None => {
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)",
            )
            .map_err(err)?;
            tx.batch_execute(SCHEMA).map_err(err)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&(SCHEMA_VERSION as i32)],
            )
            .map_err(err)?;
        }
    }
    tx.commit().map_err(err)
}

fn prepare(client: &mut Client) -> Result<Statements, ::postgres::Error> {
    Ok(Statements {
        max_seq: client.prepare("SELECT max(seq) FROM entries")?,
        insert: client.prepare(&format!(
            "INSERT INTO entries ({ENTRY_COLUMNS})
             SELECT * FROM unnest($1::int8[], $2::bytea[], $3::bytea[], $4::int8[], \
             $5::text[], $6::text[], $7::text[], $8::int8[], $9::bytea[], $10::int8[], \
             $11::bytea[], $12::text[], $13::bytea[], $14::bytea[], $15::bytea[])"
        ))?,
        read: client.prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE seq >= $1 AND seq < $2 ORDER BY seq"
        ))?,
        // One backwards index range per side, merged: fast for busy accounts too.
        history: client.prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM (
                (SELECT {ENTRY_COLUMNS} FROM entries
                    WHERE debit = $1 AND seq <= $2 ORDER BY seq DESC LIMIT $3)
                UNION ALL
                (SELECT {ENTRY_COLUMNS} FROM entries
                    WHERE credit = $1 AND debit <> $1 AND seq <= $2 ORDER BY seq DESC LIMIT $3)
             ) AS h ORDER BY seq DESC LIMIT $3"
        ))?,
        put_checkpoint: client.prepare(&format!(
            "INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (size) DO UPDATE SET root = excluded.root, head = excluded.head,
             time_ms = excluded.time_ms, bank = excluded.bank, sig = excluded.sig"
        ))?,
        latest_checkpoint: client.prepare(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY size DESC LIMIT 1"
        ))?,
        checkpoint: client.prepare(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE size = $1"
        ))?,
    })
}

/// The entry count a `SELECT max(seq)` row means.
fn stored_len(row: Row) -> Result<u64, StoreError> {
    let max: Option<i64> = row.try_get(0).map_err(|e| StoreError::Corrupt {
        seq: 0,
        what: format!("max(seq) is not a bigint: {e}"),
    })?;
    match max {
        None => Ok(0),
        Some(s) if s < 0 => Err(StoreError::Corrupt {
            seq: 0,
            what: format!("negative seq {s}"),
        }),
        Some(s) => Ok(row_seq(s).saturating_add(1)),
    }
}

/// A connection (with a connect timeout unless the string gives one), and its description
/// for messages (without the password).
fn admin(conninfo: &str) -> Result<(Client, String), StoreError> {
    let mut config: Config = conninfo.parse().map_err(|e| StoreError::Url {
        url: redact(conninfo),
        why: format!("not a PostgreSQL connection string ({})", chain(&e)),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let at = describe_config(&config);
    let client = config.connect(NoTls).map_err(|e| pg_error(&at, e))?;
    Ok((client, at))
}

/// The entry in a row selected with [`ENTRY_COLUMNS`].
fn decode_entry(row: &Row) -> Result<Entry, StoreError> {
    let seq: i64 = row.try_get(0).map_err(|e| StoreError::Corrupt {
        seq: 0,
        what: format!("a seq is not a bigint: {e}"),
    })?;
    let corrupt = |name: &str, e: ::postgres::Error| StoreError::Corrupt {
        seq: row_seq(seq),
        what: format!("column {name}: {e}"),
    };
    macro_rules! col {
        ($i:expr, $name:expr) => {
            row.try_get($i).map_err(|e| corrupt($name, e))?
        };
    }
    RawEntry {
        seq,
        prev: col!(1, "prev"),
        time_ms: col!(3, "time_ms"),
        kind: col!(4, "kind"),
        debit: col!(5, "debit"),
        credit: col!(6, "credit"),
        amount: col!(7, "amount"),
        job: col!(8, "job"),
        task: col!(9, "task"),
        record: col!(10, "record"),
        memo: col!(11, "memo"),
        authorizer: col!(12, "authorizer"),
        auth: col!(13, "auth"),
        sig: col!(14, "sig"),
    }
    .decode()
}

/// The checkpoint in a row selected with [`CHECKPOINT_COLUMNS`].
fn decode_checkpoint(row: &Row) -> Result<TreeHead, StoreError> {
    let size: i64 = row.try_get(0).map_err(|e| StoreError::CorruptCheckpoint {
        size: 0,
        what: format!("a size is not a bigint: {e}"),
    })?;
    let corrupt = |name: &str, e: ::postgres::Error| StoreError::CorruptCheckpoint {
        size: row_seq(size),
        what: format!("column {name}: {e}"),
    };
    macro_rules! col {
        ($i:expr, $name:expr) => {
            row.try_get($i).map_err(|e| corrupt($name, e))?
        };
    }
    RawCheckpoint {
        size,
        root: col!(1, "root"),
        head: col!(2, "head"),
        time_ms: col!(3, "time_ms"),
        bank: col!(4, "bank"),
        sig: col!(5, "sig"),
    }
    .decode()
}

/// `host=... port=... user=... dbname=...` of a configuration: never its password.
fn describe_config(config: &Config) -> String {
    let mut parts = Vec::new();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if !hosts.is_empty() {
        parts.push(format!("host={}", hosts.join(",")));
    }
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    if !ports.is_empty() {
        parts.push(format!("port={}", ports.join(",")));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={db}"));
    }
    if let Some(options) = config.get_options() {
        parts.push(format!("options='{options}'"));
    }
    if parts.is_empty() {
        "(defaults)".into()
    } else {
        parts.join(" ")
    }
}

/// `conninfo` with any password replaced by `***`, for messages.
fn redact(conninfo: &str) -> String {
    if let Some((scheme, rest)) = conninfo.split_once("://") {
        // postgres://user:password@host/db?password=...
        let (auth_host, query) = rest.split_once('?').unwrap_or((rest, ""));
        let auth_host = match auth_host.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => format!("{userinfo}@{host}"),
            },
            None => auth_host.to_string(),
        };
        let query: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                if p.starts_with("password=") {
                    "password=***".to_string()
                } else {
                    p.to_string()
                }
            })
            .collect();
        if query.is_empty() {
            format!("{scheme}://{auth_host}")
        } else {
            format!("{scheme}://{auth_host}?{}", query.join("&"))
        }
    } else {
        conninfo
            .split_whitespace()
            .map(|w| {
                if w.starts_with("password=") {
                    "password=***"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `error: its cause: its cause's cause...` (the client's errors print without causes).
fn chain(error: &::postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

/// Maps a PostgreSQL error at `at`, with what to do when it is clear.
fn pg_error(at: &str, error: ::postgres::Error) -> StoreError {
    let detail = if let Some(db) = error.as_db_error() {
        let mut s = db.message().to_string();
        if let Some(d) = db.detail() {
            s.push_str(&format!(" ({d})"));
        }
        let hint = match db.code() {
            c if *c == SqlState::INVALID_CATALOG_NAME => {
                Some("create the database (createdb) or fix dbname")
            }
            c if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                Some("check the user and password, and the server's pg_hba.conf")
            }
            c if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
                Some("grant the bank's user rights on the ledger's schema and tables")
            }
            c if *c == SqlState::INVALID_SCHEMA_NAME => {
                Some("create the schema named in search_path first")
            }
            _ => db.hint(),
        };
        if let Some(h) = hint {
            s.push_str("; ");
            s.push_str(h);
        }
        s
    } else {
        let mut io_kind = None;
        let mut cause: Option<&(dyn std::error::Error + 'static)> =
            std::error::Error::source(&error);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                io_kind = Some(io.kind());
                break;
            }
            cause = c.source();
        }
        let mut text = chain(&error);
        if text.starts_with(|c: char| c.is_ascii_uppercase()) {
            text[..1].make_ascii_lowercase();
        }
        match io_kind {
            Some(std::io::ErrorKind::ConnectionRefused) => {
                "connection refused; is the server running? (scripts/postgres.sh start)".into()
            }
            Some(_) => format!("{text}; is the host reachable and the server running?"),
            None if error.is_closed() => {
                "the connection was closed; did the server stop or restart? reconnect".into()
            }
            None => text,
        }
    };
    StoreError::Postgres {
        at: at.to_string(),
        detail,
        error,
    }
}

impl PgStore {
    /// Creates schema `name` (after dropping any old one) and returns a connection string
    /// whose `search_path` puts the ledger's tables there: a scratch ledger for benchmarks
    /// and tests on a shared server. [`PgStore::drop_schema`] removes it.
    pub fn scratch_schema(conninfo: &str, name: &str) -> Result<String, StoreError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Url {
                url: redact(conninfo),
                why: format!("schema name {name:?} must be letters, digits and _"),
            });
        }
        let (mut client, at) = admin(conninfo)?;
        client
            .batch_execute(&format!(
                "SET client_min_messages = warning; DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .map_err(|e| pg_error(&at, e))?;
        Ok(
            if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
                let sep = if conninfo.contains('?') { '&' } else { '?' };
                format!("{conninfo}{sep}options=-csearch_path%3D{name}")
            } else {
                format!("{conninfo} options='-csearch_path={name}'")
            },
        )
    }

    /// Drops a schema made by [`PgStore::scratch_schema`].
    pub fn drop_schema(conninfo: &str, name: &str) -> Result<(), StoreError> {
        let (mut client, at) = admin(conninfo)?;
        client
            .batch_execute(&format!(
                "SET client_min_messages = warning; DROP SCHEMA IF EXISTS {name} CASCADE"
            ))
            .map_err(|e| pg_error(&at, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("host=x password=secret dbname=y"),
            "host=x password=*** dbname=y"
        );
        assert_eq!(
            redact("postgres://bank:secret@db:5432/ledger?password=s2&sslmode=disable"),
            "postgres://bank:***@db:5432/ledger?password=***&sslmode=disable"
        );
        assert_eq!(redact("postgresql://db/ledger"), "postgresql://db/ledger");
    }

    #[test]
    fn describes_without_password() {
        let config: Config = "host=127.0.0.1 port=54329 user=postgres password=secret \
                              dbname=naac_test"
            .parse()
            .expect("conninfo");
        assert_eq!(
            describe_config(&config),
            "host=127.0.0.1 port=54329 user=postgres dbname=naac_test"
        );
    }

    #[test]
    fn refused_connection_says_what_to_do() {
        // Port 1 on localhost: nothing listens there.
        let Err(e) = PgStore::connect("host=127.0.0.1 port=1 user=x dbname=y") else {
            panic!("connected to port 1");
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("postgres at host=127.0.0.1 port=1 user=x dbname=y: "),
            "{msg}"
        );
        assert!(msg.contains("scripts/postgres.sh start"), "{msg}");
    }
}
