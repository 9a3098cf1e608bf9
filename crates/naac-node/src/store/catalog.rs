//! What this data dir's user put in the store (`store.db`, SQLite in WAL): each manifest with
//! its signed bytes, where each shard lives, how its audits went, and each host's trust.
//! `naac store put` writes it; the daemon (`naac node`) audits and repairs from it; `naac
//! store status | ls | rm` read it.

use naac_store::audit::{Trust, Verdict};
use naac_store::{Manifest, StoreId};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

/// A whole-shard challenge taken: key, expected answer, and the owner's signature of its
/// proof request when the owner handed it over (a delegate's).
pub type Taken = ([u8; 32], [u8; 32], Option<Vec<u8>>);

/// One manifest this user put.
#[derive(Clone, Debug)]
pub struct ManifestRow {
    pub id: StoreId,
    pub name: String,
    pub data_len: u64,
    pub k: u16,
    pub n: u16,
    pub created_ms: u64,
    pub days: u32,
    pub removed: bool,
}

/// Where one shard lives and how its audits went.
#[derive(Clone, Debug)]
pub struct ShardRow {
    pub manifest: StoreId,
    pub shard: u16,
    pub host: String,
    pub addrs: Vec<String>,
    pub last: Option<Verdict>,
    pub misses: u32,
    pub audits: u64,
    pub passed: u64,
    pub last_ms: u64,
    pub next_ms: u64,
}

/// The catalog; its connection sits behind a mutex so a node's tasks may share it across
/// awaits (each call holds it only while SQLite runs).
pub struct Catalog {
    db: std::sync::Mutex<Connection>,
}

impl Catalog {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db =
            Connection::open(path).map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS manifests (
                id TEXT PRIMARY KEY, name TEXT NOT NULL, data_len INTEGER NOT NULL,
                k INTEGER NOT NULL, n INTEGER NOT NULL, created_ms INTEGER NOT NULL,
                days INTEGER NOT NULL, signed BLOB NOT NULL, removed INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS shards (
                manifest TEXT NOT NULL, shard INTEGER NOT NULL, host TEXT NOT NULL,
                addrs TEXT NOT NULL, last TEXT, misses INTEGER NOT NULL DEFAULT 0,
                audits INTEGER NOT NULL DEFAULT 0, passed INTEGER NOT NULL DEFAULT 0,
                last_ms INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (manifest, shard));
             CREATE TABLE IF NOT EXISTS hosts (
                host TEXT PRIMARY KEY, passed INTEGER NOT NULL DEFAULT 0,
                failed INTEGER NOT NULL DEFAULT 0, since_failure INTEGER);
             CREATE TABLE IF NOT EXISTS challenges (
                manifest TEXT NOT NULL, shard INTEGER NOT NULL, idx INTEGER NOT NULL,
                key BLOB NOT NULL, answer BLOB NOT NULL, used INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (manifest, shard, idx));
             CREATE TABLE IF NOT EXISTS events (
                manifest TEXT NOT NULL, at_ms INTEGER NOT NULL, what TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS pay (
                manifest TEXT PRIMARY KEY, bank TEXT NOT NULL, bank_key BLOB NOT NULL,
                job BLOB NOT NULL, escrowed INTEGER NOT NULL, end_ms INTEGER NOT NULL,
                max_price INTEGER);
             CREATE TABLE IF NOT EXISTS payments (
                manifest TEXT NOT NULL, host TEXT NOT NULL, period INTEGER NOT NULL,
                amount INTEGER NOT NULL, msg BLOB NOT NULL, sig BLOB NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending',
                PRIMARY KEY (manifest, host, period));",
        )?;
        // Added after the first stores were made.
        for (table, col, ty) in [
            ("shards", "price", "INTEGER NOT NULL DEFAULT 0"),
            ("shards", "paid_until", "INTEGER NOT NULL DEFAULT 0"),
            // The owner's signature of a delegated challenge (a delegate cannot sign one).
            ("challenges", "sig", "BLOB"),
        ] {
            let has: bool = db
                .prepare(&format!(
                    "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
                ))?
                .exists([col])?;
            if !has {
                db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {col} {ty}"))?;
            }
        }
        Ok(Self {
            db: std::sync::Mutex::new(db),
        })
    }

    pub(super) fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a manifest this user put.
    pub fn add(&self, id: &StoreId, m: &Manifest, signed: &[u8], days: u32) -> anyhow::Result<()> {
        self.db().execute(
            "INSERT INTO manifests (id, name, data_len, k, n, created_ms, days, signed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(id) DO UPDATE SET removed = 0, days = excluded.days",
            params![
                id.to_hex(),
                m.name,
                m.geometry.data_len as i64,
                m.geometry.k,
                m.geometry.n,
                m.created_ms as i64,
                days,
                signed
            ],
        )?;
        Ok(())
    }

    /// Places (or moves) a shard on a host at `price` per GiB-day; its audit record starts
    /// afresh, and its pay accrues from `now_ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn place(
        &self,
        id: &StoreId,
        shard: u16,
        host: &str,
        addrs: &[String],
        price: naac_types::Price,
        now_ms: u64,
        next_ms: u64,
    ) -> anyhow::Result<()> {
        self.db().execute(
            "INSERT INTO shards (manifest, shard, host, addrs, next_ms, price, paid_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(manifest, shard) DO UPDATE SET host = excluded.host,
               addrs = excluded.addrs, last = NULL, misses = 0, audits = 0, passed = 0,
               next_ms = excluded.next_ms, price = excluded.price,
               paid_until = excluded.paid_until",
            params![
                id.to_hex(),
                shard,
                host,
                serde_json::to_string(addrs)?,
                next_ms as i64,
                price.0 as i64,
                now_ms as i64
            ],
        )?;
        Ok(())
    }

    /// Every manifest, newest first.
    pub fn manifests(&self) -> anyhow::Result<Vec<ManifestRow>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT id, name, data_len, k, n, created_ms, days, removed FROM manifests
             ORDER BY created_ms DESC",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                ManifestRow {
                    id: StoreId::of(b""),
                    name: r.get(1)?,
                    data_len: r.get::<_, i64>(2)? as u64,
                    k: r.get(3)?,
                    n: r.get(4)?,
                    created_ms: r.get::<_, i64>(5)? as u64,
                    days: r.get(6)?,
                    removed: r.get::<_, i64>(7)? != 0,
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, mut m) = row?;
            if let Some(id) = StoreId::from_hex(&id) {
                m.id = id;
                out.push(m);
            }
        }
        Ok(out)
    }

    /// A manifest's row and its signed bytes.
    pub fn get(&self, id: &StoreId) -> anyhow::Result<Option<(ManifestRow, Vec<u8>)>> {
        let all = self.manifests()?;
        let Some(row) = all.into_iter().find(|m| m.id == *id) else {
            return Ok(None);
        };
        let signed: Vec<u8> = self.db().query_row(
            "SELECT signed FROM manifests WHERE id = ?1",
            [id.to_hex()],
            |r| r.get(0),
        )?;
        Ok(Some((row, signed)))
    }

    pub fn mark_removed(&self, id: &StoreId) -> anyhow::Result<()> {
        self.db().execute(
            "UPDATE manifests SET removed = 1 WHERE id = ?1",
            [id.to_hex()],
        )?;
        self.db()
            .execute("DELETE FROM shards WHERE manifest = ?1", [id.to_hex()])?;
        Ok(())
    }

    /// The shards of a manifest that are placed, by index.
    pub fn shards(&self, id: &StoreId) -> anyhow::Result<Vec<ShardRow>> {
        self.shard_rows("WHERE manifest = ?1 ORDER BY shard", params![id.to_hex()])
    }

    /// Shards whose audit is due at `now_ms` (of manifests not removed), soonest first: those
    /// whose time came, and those not audited for 1.5 × `every_ms` (so a shorter period
    /// takes effect at once).
    pub fn due(&self, now_ms: u64, every_ms: u64, limit: usize) -> anyhow::Result<Vec<ShardRow>> {
        self.shard_rows(
            "WHERE (next_ms <= ?1 OR last_ms + ?3 <= ?1)
               AND manifest IN (SELECT id FROM manifests WHERE removed = 0)
             ORDER BY next_ms LIMIT ?2",
            params![
                now_ms as i64,
                limit as i64,
                (every_ms + every_ms / 2) as i64
            ],
        )
    }

    fn shard_rows(&self, tail: &str, p: impl rusqlite::Params) -> anyhow::Result<Vec<ShardRow>> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT manifest, shard, host, addrs, last, misses, audits, passed, last_ms, next_ms
             FROM shards {tail}"
        ))?;
        let rows = st.query_map(p, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u16>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, u32>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, i64>(9)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (m, shard, host, addrs, last, misses, audits, passed, last_ms, next_ms) = row?;
            let Some(manifest) = StoreId::from_hex(&m) else {
                continue;
            };
            out.push(ShardRow {
                manifest,
                shard,
                host,
                addrs: serde_json::from_str(&addrs).unwrap_or_default(),
                last: last.as_deref().and_then(Verdict::parse),
                misses,
                audits: audits as u64,
                passed: passed as u64,
                last_ms: last_ms as u64,
                next_ms: next_ms as u64,
            });
        }
        Ok(out)
    }

    /// Records an audit of a shard and of its host, and when to audit it next.
    pub fn record(
        &self,
        id: &StoreId,
        shard: u16,
        host: &str,
        v: Verdict,
        now_ms: u64,
        next_ms: u64,
    ) -> anyhow::Result<()> {
        let missed = matches!(v, Verdict::Offline | Verdict::Late);
        self.db().execute(
            "UPDATE shards SET last = ?3, misses = CASE WHEN ?4 THEN misses + 1 ELSE 0 END,
               audits = audits + 1, passed = passed + (?3 = 'passed'), last_ms = ?5, next_ms = ?6
             WHERE manifest = ?1 AND shard = ?2 AND host = ?7",
            params![
                id.to_hex(),
                shard,
                v.as_str(),
                missed,
                now_ms as i64,
                next_ms as i64,
                host
            ],
        )?;
        let mut t = self.trust(host)?;
        t.record(v);
        self.db().execute(
            "INSERT INTO hosts (host, passed, failed, since_failure) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(host) DO UPDATE SET passed = excluded.passed, failed = excluded.failed,
               since_failure = excluded.since_failure",
            params![
                host,
                t.passed as i64,
                t.failed as i64,
                t.since_failure.map(|n| n as i64)
            ],
        )?;
        Ok(())
    }

    /// What audits say of a host.
    pub fn trust(&self, host: &str) -> anyhow::Result<Trust> {
        Ok(self
            .db()
            .query_row(
                "SELECT passed, failed, since_failure FROM hosts WHERE host = ?1",
                [host],
                |r| {
                    Ok(Trust {
                        passed: r.get::<_, i64>(0)? as u64,
                        failed: r.get::<_, i64>(1)? as u64,
                        since_failure: r.get::<_, Option<i64>>(2)?.map(|n| n as u64),
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Keeps whole-shard challenges (key, expected answer) for a shard, replacing any left.
    pub fn set_challenges(
        &self,
        id: &StoreId,
        shard: u16,
        pairs: &[([u8; 32], [u8; 32])],
    ) -> anyhow::Result<()> {
        let unsigned: Vec<_> = pairs.iter().map(|(k, a)| (*k, *a, None)).collect();
        self.keep_challenges(id, shard, &unsigned)
    }

    /// Keeps challenges (key, answer, the owner's signature when it handed them over) for a
    /// shard, replacing any left.
    pub(super) fn keep_challenges(
        &self,
        id: &StoreId,
        shard: u16,
        rows: &[Taken],
    ) -> anyhow::Result<()> {
        let db = self.db();
        db.execute(
            "DELETE FROM challenges WHERE manifest = ?1 AND shard = ?2",
            params![id.to_hex(), shard],
        )?;
        for (i, (k, a, sig)) in rows.iter().enumerate() {
            db.execute(
                "INSERT INTO challenges (manifest, shard, idx, key, answer, sig)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id.to_hex(), shard, i as i64, &k[..], &a[..], sig],
            )?;
        }
        Ok(())
    }

    /// Puts a challenge taken but not asked back (its host could not answer it yet).
    pub fn release_challenge(
        &self,
        id: &StoreId,
        shard: u16,
        key: &[u8; 32],
    ) -> anyhow::Result<()> {
        self.db().execute(
            "UPDATE challenges SET used = 0 WHERE manifest = ?1 AND shard = ?2 AND key = ?3",
            params![id.to_hex(), shard, &key[..]],
        )?;
        Ok(())
    }

    /// Takes the next unused whole-shard challenge of a shard (marking it used): key,
    /// expected answer, and the owner's signature when it was handed over by the owner.
    pub fn take_challenge(&self, id: &StoreId, shard: u16) -> anyhow::Result<Option<Taken>> {
        let db = self.db();
        type Row = (i64, Vec<u8>, Vec<u8>, Option<Vec<u8>>);
        let row: Option<Row> = db
            .query_row(
                "SELECT idx, key, answer, sig FROM challenges WHERE manifest = ?1 AND shard = ?2 AND used = 0
                 ORDER BY idx LIMIT 1",
                params![id.to_hex(), shard],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((idx, k, a, sig)) = row else {
            return Ok(None);
        };
        db.execute(
            "UPDATE challenges SET used = 1 WHERE manifest = ?1 AND shard = ?2 AND idx = ?3",
            params![id.to_hex(), shard, idx],
        )?;
        let (Ok(k), Ok(a)) = (<[u8; 32]>::try_from(k), <[u8; 32]>::try_from(a)) else {
            return Ok(None);
        };
        Ok(Some((k, a, sig)))
    }

    /// Notes something that happened to a manifest (a repair), for `naac store status`.
    pub fn note(&self, id: &StoreId, now_ms: u64, what: &str) -> anyhow::Result<()> {
        self.db().execute(
            "INSERT INTO events (manifest, at_ms, what) VALUES (?1, ?2, ?3)",
            params![id.to_hex(), now_ms as i64, what],
        )?;
        // Keep the last 100 per manifest.
        self.db().execute(
            "DELETE FROM events WHERE manifest = ?1 AND rowid NOT IN
               (SELECT rowid FROM events WHERE manifest = ?1 ORDER BY at_ms DESC LIMIT 100)",
            [id.to_hex()],
        )?;
        Ok(())
    }

    /// What happened to a manifest, newest first.
    pub fn events(&self, id: &StoreId) -> anyhow::Result<Vec<(u64, String)>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT at_ms, what FROM events WHERE manifest = ?1 ORDER BY at_ms DESC LIMIT 20",
        )?;
        let rows = st.query_map([id.to_hex()], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
