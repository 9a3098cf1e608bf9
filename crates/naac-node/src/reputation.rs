//! What a requester has learned about each provider, kept in SQLite (`reputation.db` in the
//! data dir) so it carries across jobs and restarts.
//!
//! Per provider: results verified (agreed with a quorum), rejected (disagreed with a quorum,
//! failed the job's verifier, or carried a bad signature) and runs lost (vanished, lease
//! lapsed). Per provider and module: the streak of verified results in a row that adaptive
//! replication uses. The score is `(verified + 1) / (verified + rejected + 2)`: a new
//! provider starts at 0.5 and each result moves it; a provider with at least
//! [`MIN_REJECTIONS_TO_EXCLUDE`] rejections whose score falls below the job's
//! `min_reputation` is not used.
//!
//! Updates are batched in memory and written in one transaction by [`Reputation::flush`]
//! (the requester flushes about once a second and at the end of a job), so verdicts never
//! wait on the disk.

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::Path;

/// Rejections a provider needs before a low score can exclude it, so one unlucky
/// disagreement does not ban a newcomer.
pub const MIN_REJECTIONS_TO_EXCLUDE: u64 = 2;

/// One provider's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    pub verified: u64,
    pub rejected: u64,
    pub lost: u64,
}

impl Record {
    /// Laplace-smoothed share of results that held up.
    pub fn score(&self) -> f64 {
        (self.verified as f64 + 1.0) / ((self.verified + self.rejected) as f64 + 2.0)
    }

    /// Whether a job requiring `min_score` should stop using this provider.
    pub fn excluded(&self, min_score: f64) -> bool {
        self.rejected >= MIN_REJECTIONS_TO_EXCLUDE && self.score() < min_score
    }
}

/// One row of the store, for listings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub peer_id: String,
    #[serde(flatten)]
    pub record: Record,
    pub score: f64,
    /// Unix seconds of the last update.
    pub updated: i64,
}

/// The store plus updates not yet written.
pub struct Reputation {
    conn: Connection,
    /// Records as they are now (loaded plus pending changes), by peer.
    cache: HashMap<String, Record>,
    /// Increments not yet written (added to the stored counts, so two requesters sharing a
    /// data dir do not overwrite each other's).
    dirty: HashMap<String, Record>,
    streaks: HashMap<(String, String), u32>,
    dirty_streaks: HashMap<(String, String), u32>,
}

impl Reputation {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("open reputation store {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS provider (
                 peer TEXT PRIMARY KEY,
                 verified INTEGER NOT NULL DEFAULT 0,
                 rejected INTEGER NOT NULL DEFAULT 0,
                 lost INTEGER NOT NULL DEFAULT 0,
                 updated INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS provider_module (
                 peer TEXT NOT NULL,
                 module TEXT NOT NULL,
                 streak INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (peer, module)
             );",
        )
        .with_context(|| {
            format!(
                "set up reputation store {}; if it is corrupt, move it away to start afresh",
                path.display()
            )
        })?;
        Ok(Self {
            conn,
            cache: HashMap::new(),
            dirty: HashMap::new(),
            streaks: HashMap::new(),
            dirty_streaks: HashMap::new(),
        })
    }

    /// The provider's record (all zero for a stranger).
    pub fn get(&mut self, peer: &str) -> anyhow::Result<Record> {
        if let Some(r) = self.cache.get(peer) {
            return Ok(r.clone());
        }
        let r = self
            .conn
            .query_row(
                "SELECT verified, rejected, lost FROM provider WHERE peer = ?1",
                params![peer],
                |row| {
                    Ok(Record {
                        verified: row.get::<_, i64>(0)? as u64,
                        rejected: row.get::<_, i64>(1)? as u64,
                        lost: row.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .optional()
            .context("read reputation")?
            .unwrap_or_default();
        self.cache.insert(peer.to_string(), r.clone());
        Ok(r)
    }

    /// The provider's streak of verified results for `module`.
    pub fn streak(&mut self, peer: &str, module: &str) -> anyhow::Result<u32> {
        let key = (peer.to_string(), module.to_string());
        if let Some(s) = self.streaks.get(&key) {
            return Ok(*s);
        }
        let s = self
            .conn
            .query_row(
                "SELECT streak FROM provider_module WHERE peer = ?1 AND module = ?2",
                params![peer, module],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .context("read streak")?
            .unwrap_or(0) as u32;
        self.streaks.insert(key, s);
        Ok(s)
    }

    /// Adds to the provider's counts; written at the next flush.
    pub fn add(
        &mut self,
        peer: &str,
        verified: u64,
        rejected: u64,
        lost: u64,
    ) -> anyhow::Result<Record> {
        let mut r = self.get(peer)?;
        r.verified += verified;
        r.rejected += rejected;
        r.lost += lost;
        self.cache.insert(peer.to_string(), r.clone());
        let d = self.dirty.entry(peer.to_string()).or_default();
        d.verified += verified;
        d.rejected += rejected;
        d.lost += lost;
        Ok(r)
    }

    pub fn set_streak(&mut self, peer: &str, module: &str, streak: u32) {
        let key = (peer.to_string(), module.to_string());
        self.streaks.insert(key.clone(), streak);
        self.dirty_streaks.insert(key, streak);
    }

    /// Writes pending updates in one transaction.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if self.dirty.is_empty() && self.dirty_streaks.is_empty() {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let tx = self.conn.transaction().context("begin reputation update")?;
        {
            let mut up = tx.prepare_cached(
                "INSERT INTO provider (peer, verified, rejected, lost, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(peer) DO UPDATE SET verified = verified + ?2,
                     rejected = rejected + ?3, lost = lost + ?4, updated = ?5",
            )?;
            for (peer, r) in &self.dirty {
                up.execute(params![
                    peer,
                    r.verified as i64,
                    r.rejected as i64,
                    r.lost as i64,
                    now
                ])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO provider_module (peer, module, streak) VALUES (?1, ?2, ?3)
                 ON CONFLICT(peer, module) DO UPDATE SET streak = ?3",
            )?;
            for ((peer, module), s) in &self.dirty_streaks {
                st.execute(params![peer, module, *s as i64])?;
            }
        }
        tx.commit().context("write reputation")?;
        self.dirty.clear();
        self.dirty_streaks.clear();
        Ok(())
    }

    /// Every provider on record, best score first.
    pub fn list(&mut self) -> anyhow::Result<Vec<Row>> {
        self.flush()?;
        let mut stmt = self.conn.prepare(
            "SELECT peer, verified, rejected, lost, updated FROM provider ORDER BY peer",
        )?;
        let mut rows: Vec<Row> = stmt
            .query_map([], |row| {
                let record = Record {
                    verified: row.get::<_, i64>(1)? as u64,
                    rejected: row.get::<_, i64>(2)? as u64,
                    lost: row.get::<_, i64>(3)? as u64,
                };
                Ok(Row {
                    peer_id: row.get(0)?,
                    score: record.score(),
                    record,
                    updated: row.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()
            .context("list reputation")?;
        rows.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.peer_id.cmp(&b.peer_id)));
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_streaks_survive_a_reopen() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("rep.db");
        let mut r = Reputation::open(&path).expect("open");
        assert_eq!(r.get("a").expect("get"), Record::default());
        r.add("a", 5, 0, 1).expect("add");
        r.add("b", 0, 3, 0).expect("add");
        r.set_streak("a", "m", 5);
        r.flush().expect("flush");
        drop(r);
        let mut r = Reputation::open(&path).expect("reopen");
        let a = r.get("a").expect("get");
        assert_eq!((a.verified, a.rejected, a.lost), (5, 0, 1));
        assert_eq!(r.streak("a", "m").expect("streak"), 5);
        assert_eq!(r.streak("a", "other").expect("streak"), 0);
        let b = r.get("b").expect("get");
        assert!(b.excluded(0.5), "score {}", b.score());
        assert!(!a.excluded(0.5));
        let rows = r.list().expect("list");
        assert_eq!(rows[0].peer_id, "a");
    }

    #[test]
    fn one_rejection_does_not_exclude_a_newcomer() {
        let r = Record {
            verified: 0,
            rejected: 1,
            lost: 0,
        };
        assert!(r.score() < 0.5);
        assert!(!r.excluded(0.5));
    }
}
