//! The node's job queue: jobs submitted to it (`naac submit`, the HTTP API) with their state,
//! kept in SQLite (`jobs.db` in the data dir) so a restart finds every one. Each job's files
//! are under `jobs/<id>/job/` and its results under `jobs/<id>/out/`. The runner takes the
//! oldest queued job; a job that was running when the node stopped is queued again at the
//! next start (it runs again into the same results directory, whose payment log the run
//! resends first).

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Most jobs waiting at once; a submit beyond it is refused for now.
pub const MAX_QUEUED: usize = 1024;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "running" => State::Running,
            "done" => State::Done,
            "failed" => State::Failed,
            "cancelled" => State::Cancelled,
            _ => State::Queued,
        }
    }

    pub fn finished(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }
}

/// One job as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRow {
    pub id: String,
    pub name: String,
    pub state: State,
    /// Milliseconds since the Unix epoch.
    pub submitted_ms: u64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub error: Option<String>,
    /// Its `summary.json`, once it ran.
    pub summary: Option<String>,
}

/// What the node's jobs add up to, from their summaries (the metrics' source).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub by_state: Vec<(State, u64)>,
    pub tasks: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retried: u64,
    pub fuel: u64,
    /// Runs of tasks (replicas and retries included).
    pub runs: u64,
    pub rejected: u64,
    pub disagreements: u64,
    pub settlements: u64,
    pub refused: u64,
    /// Results received over a direct connection, and through a relay.
    pub arrived_direct: u64,
    pub arrived_relayed: u64,
    /// Tasks that failed for good, by kind (`trap`, `timeout`, `fuel`, `memory`, …).
    pub failures: Vec<(String, u64)>,
}

/// The queue.
pub struct JobStore {
    conn: Mutex<Connection>,
    dir: PathBuf,
}

const COLUMNS: &str = "id, name, state, submitted_ms, started_ms, finished_ms, error, summary";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    let ms = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|v| v.max(0) as u64))
    };
    Ok(JobRow {
        id: r.get(0)?,
        name: r.get(1)?,
        state: State::parse(&r.get::<_, String>(2)?),
        submitted_ms: ms(3)?.unwrap_or_default(),
        started_ms: ms(4)?,
        finished_ms: ms(5)?,
        error: r.get(6)?,
        summary: r.get(7)?,
    })
}

impl JobStore {
    /// Opens (or creates) the queue under `root` (the node's data dir); jobs left running
    /// by a node that stopped are queued again.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        let path = root.join("jobs.db");
        let conn = Connection::open(&path)
            .with_context(|| format!("open the job queue {}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS jobs (
                 id TEXT PRIMARY KEY,
                 name TEXT NOT NULL,
                 state TEXT NOT NULL,
                 submitted_ms INTEGER NOT NULL,
                 started_ms INTEGER,
                 finished_ms INTEGER,
                 error TEXT,
                 summary TEXT,
                 idempotency_key TEXT UNIQUE
             );
             CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, submitted_ms);
             UPDATE jobs SET state = 'queued', started_ms = NULL WHERE state = 'running';",
        )
        .with_context(|| format!("set up the job queue {}", path.display()))?;
        Ok(Self {
            conn: Mutex::new(conn),
            dir: root.join("jobs"),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Job `id`'s directory: its files in `job/`, its results in `out/`.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Jobs waiting to run.
    pub fn queued(&self) -> anyhow::Result<usize> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM jobs WHERE state = 'queued'",
            [],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    /// The job submitted with `key`, if any.
    pub fn by_idempotency_key(&self, key: &str) -> anyhow::Result<Option<JobRow>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE idempotency_key = ?1"),
                params![key],
                row,
            )
            .optional()?)
    }

    /// Queues a new job (its files already in place).
    pub fn insert(
        &self,
        id: &str,
        name: &str,
        key: Option<&str>,
        now_ms: u64,
    ) -> anyhow::Result<JobRow> {
        self.conn().execute(
            "INSERT INTO jobs (id, name, state, submitted_ms, idempotency_key) VALUES (?1, ?2, 'queued', ?3, ?4)",
            params![id, name, now_ms as i64, key],
        )?;
        self.get(id)?.context("the job just queued is gone")
    }

    pub fn get(&self, id: &str) -> anyhow::Result<Option<JobRow>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()?)
    }

    /// Every job, newest first.
    pub fn list(&self) -> anyhow::Result<Vec<JobRow>> {
        Ok(self.page(usize::MAX, None)?.0)
    }

    /// At most `limit` jobs, newest first, submitted before the job at `cursor` (a cursor
    /// this returned; `None` starts from the newest); and the cursor of the next page,
    /// `None` on the last. Jobs submitted meanwhile never shift a page.
    pub fn page(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> anyhow::Result<(Vec<JobRow>, Option<String>)> {
        let before = match cursor {
            None => i64::MAX,
            Some(c) => c
                .parse::<i64>()
                .ok()
                .filter(|c| *c > 0)
                .with_context(|| format!("cursor {c:?} is not one this node gave"))?,
        };
        let conn = self.conn();
        let mut q = conn.prepare(&format!(
            "SELECT {COLUMNS}, rowid FROM jobs WHERE rowid < ?1 ORDER BY rowid DESC LIMIT ?2"
        ))?;
        let take = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let mut rows = q
            .query_map(params![before, take], |r| {
                Ok((row(r)?, r.get::<_, i64>(8)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|(_, id)| id.to_string())
        } else {
            None
        };
        Ok((rows.into_iter().map(|(r, _)| r).collect(), next))
    }

    /// Jobs by state, and the sums over every finished job's summary (see [`Totals`]).
    pub fn totals(&self) -> anyhow::Result<Totals> {
        let conn = self.conn();
        let mut t = Totals::default();
        let mut q = conn.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        for r in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (state, n) = r?;
            t.by_state.push((State::parse(&state), n.max(0) as u64));
        }
        let sums = [
            "$.tasks.total",
            "$.tasks.succeeded",
            "$.tasks.failed",
            "$.tasks.retried",
            "$.fuel_total",
            "$.verification.runs",
            "$.verification.rejected_results",
            "$.verification.disagreements",
            "$.cost.settlements",
            "$.cost.refused",
        ];
        let sql = format!(
            "SELECT {} FROM jobs WHERE summary IS NOT NULL",
            sums.iter()
                .map(|p| format!("COALESCE(SUM(json_extract(summary, '{p}')), 0)"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let v: Vec<u64> = conn.query_row(&sql, [], |r| {
            (0..sums.len())
                .map(|i| Ok(r.get::<_, i64>(i)?.max(0) as u64))
                .collect()
        })?;
        [
            t.tasks,
            t.succeeded,
            t.failed,
            t.retried,
            t.fuel,
            t.runs,
            t.rejected,
            t.disagreements,
            t.settlements,
            t.refused,
        ] = v.try_into().map_err(|_| anyhow::anyhow!("totals"))?;
        let (direct, relayed): (i64, i64) = conn.query_row(
            "SELECT COALESCE(SUM(json_extract(p.value, '$.arrived.direct')), 0),
                    COALESCE(SUM(json_extract(p.value, '$.arrived.relayed')), 0)
             FROM jobs, json_each(jobs.summary, '$.providers') AS p
             WHERE jobs.summary IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        (t.arrived_direct, t.arrived_relayed) = (direct.max(0) as u64, relayed.max(0) as u64);
        let mut q = conn.prepare(
            "SELECT json_extract(f.value, '$.kind') AS kind, COUNT(*)
             FROM jobs, json_each(jobs.summary, '$.failures') AS f
             WHERE jobs.summary IS NOT NULL GROUP BY kind ORDER BY kind",
        )?;
        for r in q.query_map([], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
        })? {
            let (kind, n) = r?;
            t.failures
                .push((kind.unwrap_or_else(|| "other".into()), n.max(0) as u64));
        }
        Ok(t)
    }

    /// Marks the oldest queued job running and returns it.
    pub fn start_next(&self, now_ms: u64) -> anyhow::Result<Option<JobRow>> {
        let id: Option<String> = self
            .conn()
            .query_row(
                "SELECT id FROM jobs WHERE state = 'queued' ORDER BY submitted_ms, id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else {
            return Ok(None);
        };
        self.conn().execute(
            "UPDATE jobs SET state = 'running', started_ms = ?2 WHERE id = ?1 AND state = 'queued'",
            params![id, now_ms as i64],
        )?;
        self.get(&id)
    }

    /// Records how a running job ended (a job cancelled meanwhile stays cancelled, with
    /// whatever summary it got).
    pub fn finish(
        &self,
        id: &str,
        state: State,
        summary: Option<&str>,
        error: Option<&str>,
        now_ms: u64,
    ) -> anyhow::Result<()> {
        self.conn().execute(
            "UPDATE jobs SET state = CASE WHEN state = 'cancelled' THEN 'cancelled' ELSE ?2 END,
                 summary = ?3, error = ?4, finished_ms = ?5 WHERE id = ?1",
            params![id, state.as_str(), summary, error, now_ms as i64],
        )?;
        Ok(())
    }

    /// Cancels a queued or running job; `None` if there is no such job.
    pub fn cancel(&self, id: &str, now_ms: u64) -> anyhow::Result<Option<JobRow>> {
        self.conn().execute(
            "UPDATE jobs SET state = 'cancelled', finished_ms = ?2
                 WHERE id = ?1 AND state IN ('queued', 'running')",
            params![id, now_ms as i64],
        )?;
        self.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_and_a_restart_queues_the_running_one_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = JobStore::open(dir.path()).expect("open");
        s.insert("a", "first", Some("k1"), 1).expect("a");
        s.insert("b", "second", None, 2).expect("b");
        assert!(
            s.insert("c", "again", Some("k1"), 3).is_err(),
            "one job per key"
        );
        assert_eq!(
            s.by_idempotency_key("k1").expect("key").map(|r| r.id),
            Some("a".into())
        );
        assert_eq!(s.queued().expect("n"), 2);
        let a = s.start_next(10).expect("next").expect("a");
        assert_eq!((a.id.as_str(), a.state), ("a", State::Running));
        drop(s);
        let s = JobStore::open(dir.path()).expect("reopen");
        assert_eq!(s.get("a").expect("a").expect("a").state, State::Queued);
        let a = s.start_next(11).expect("next").expect("a");
        s.finish(&a.id, State::Done, Some("{}"), None, 12)
            .expect("finish");
        let b = s.start_next(13).expect("next").expect("b");
        s.cancel(&b.id, 14).expect("cancel");
        s.finish(&b.id, State::Failed, None, Some("stopped"), 15)
            .expect("finish");
        assert_eq!(s.get("b").expect("b").expect("b").state, State::Cancelled);
        assert!(s.start_next(16).expect("next").is_none());
        let names: Vec<String> = s
            .list()
            .expect("list")
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["second", "first"]);
    }

    #[test]
    fn totals_add_up_the_summaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = JobStore::open(dir.path()).expect("open");
        for (id, ok) in [("a", 3), ("b", 4)] {
            s.insert(id, "x", None, 1).expect("insert");
            s.start_next(2).expect("start");
            let summary = format!(
                r#"{{"tasks": {{"total": 5, "succeeded": {ok}, "failed": 1, "retried": 0}}, "fuel_total": 100,
                   "failures": [{{"task": 4, "kind": "trap", "message": "unreachable"}}],
                   "providers": [{{"arrived": {{"direct": 2, "relayed": 1}}}}, {{"arrived": {{"direct": 1, "relayed": 0}}}}]}}"#
            );
            s.finish(id, State::Done, Some(&summary), None, 3)
                .expect("finish");
        }
        s.insert("c", "x", None, 4).expect("insert");
        let t = s.totals().expect("totals");
        assert_eq!((t.tasks, t.succeeded, t.failed, t.fuel), (10, 7, 2, 200));
        assert_eq!((t.arrived_direct, t.arrived_relayed), (6, 2));
        assert!(t.by_state.contains(&(State::Done, 2)));
        assert!(t.by_state.contains(&(State::Queued, 1)));
        assert_eq!(t.failures, vec![("trap".to_string(), 2)]);
    }

    #[test]
    fn pages_walk_every_job_once_whatever_is_submitted_meanwhile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = JobStore::open(dir.path()).expect("open");
        for i in 0..7 {
            s.insert(&format!("j{i}"), "x", None, 5).expect("insert");
        }
        let (first, next) = s.page(3, None).expect("page");
        let ids = |rows: &[JobRow]| rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&first), ["j6", "j5", "j4"]);
        s.insert("late", "x", None, 5).expect("late");
        let (second, next) = s.page(3, next.as_deref()).expect("page");
        assert_eq!(ids(&second), ["j3", "j2", "j1"]);
        let (third, next) = s.page(3, next.as_deref()).expect("page");
        assert_eq!((ids(&third), next), (vec!["j0".to_string()], None));
        assert!(s.page(3, Some("-1")).is_err());
        assert!(s.page(3, Some("x")).is_err());
    }
}
