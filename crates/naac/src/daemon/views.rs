//! What the API shows besides jobs: the pool and the market (surveyed from a throwaway node,
//! one survey at a time, kept [`FRESH`]), the user's wallet (the `naac wallet` commands, run
//! as child processes of this binary so the API answers exactly what the CLI does), the
//! owner's policy (read and edited in place as `naac policy show|set` do), and the user's
//! stored data read and written for holders of their data tokens (through a throwaway node,
//! at most [`DATA_AT_ONCE`] at a time).

use naac_api::{Pending, PendingBytes, Problem};
use naac_net::Multiaddr;
use naac_node::home::Home;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long a survey answers for.
const FRESH: Duration = Duration::from_secs(10);
/// How long a survey listens.
const LISTEN: Duration = Duration::from_secs(2);
/// The longest a `naac wallet` child may take.
const WALLET_TIMEOUT: Duration = Duration::from_secs(60);

/// Stored-data reads and writes through the API at once.
pub const DATA_AT_ONCE: usize = 4;
/// How long a read looks for the data's hosts.
const DATA_LOOKUP: Duration = Duration::from_secs(3);

/// A survey's last answer.
#[derive(Default)]
struct Cached {
    at: Option<Instant>,
    value: serde_json::Value,
}

pub struct Views {
    home: Home,
    join: Vec<Multiaddr>,
    mdns: bool,
    pool: Mutex<Cached>,
    market: Mutex<Cached>,
    data: Arc<tokio::sync::Semaphore>,
}

fn failed(what: &str, e: anyhow::Error) -> Problem {
    Problem::new(502, "bad gateway", format!("{what}: {e:#}"))
}

impl Views {
    pub fn new(home: Home, join: Vec<Multiaddr>, mdns: bool) -> Arc<Views> {
        Arc::new(Views {
            home,
            join,
            mdns,
            pool: Mutex::new(Cached::default()),
            market: Mutex::new(Cached::default()),
            data: Arc::new(tokio::sync::Semaphore::new(DATA_AT_ONCE)),
        })
    }

    pub fn pool(self: &Arc<Self>) -> Pending {
        let me = self.clone();
        Box::pin(async move {
            // Held across the survey: callers meanwhile wait for it, not start their own.
            let mut c = me.pool.lock().await;
            if c.at.is_none_or(|t| t.elapsed() >= FRESH) {
                c.value = crate::pool::survey_json(&me.home, &me.join, me.mdns, LISTEN)
                    .await
                    .map_err(|e| failed("survey the pool", e))?;
                c.at = Some(Instant::now());
            }
            Ok(c.value.clone())
        })
    }

    /// The node that reaches the storage hosts for a data request, and the user key.
    async fn data_node(
        &self,
    ) -> Result<
        (
            naac_net::Client,
            naac_net::Keypair,
            tokio::sync::OwnedSemaphorePermit,
        ),
        Problem,
    > {
        let permit = self.data.clone().try_acquire_owned().map_err(|_| {
            Problem::new(
                429,
                "too many requests",
                format!("{DATA_AT_ONCE} stored-data requests are running; try again"),
            )
        })?;
        if self.join.is_empty() && !self.mdns {
            return Err(Problem::not_found(
                "this node reaches no storage hosts: start it with --join ADDR",
            ));
        }
        let (client, _events) = crate::reach::looking_node(&self.join, self.mdns)
            .await
            .map_err(|e| failed("reach the pool", e))?;
        let user = crate::run::user_key(&self.home).map_err(|e| failed("the user key", e))?;
        Ok((client, user, permit))
    }

    pub fn data_read(self: &Arc<Self>, id: String, path: String) -> PendingBytes {
        let me = self.clone();
        Box::pin(async move {
            let sid = naac_store::StoreId::from_hex(&id)
                .ok_or_else(|| Problem::bad_request(format!("{id:?} is not a stored-data id")))?;
            let (client, user, _permit) = me.data_node().await?;
            let access = naac_node::store::DataAccess {
                user,
                tokens: Vec::new(),
            };
            let hints = crate::store::catalog_hints(&me.home, &sid);
            let opened = access
                .open(&client, &sid, hints, DATA_LOOKUP)
                .await
                .map_err(|e| failed(&format!("open naac://{id}"), e))?;
            if opened.manifest.file(&path).is_none() {
                return Err(Problem::not_found(format!(
                    "naac://{id} holds no file {path:?}"
                )));
            }
            naac_node::store::get::read_file(&client, &opened, &path)
                .await
                .map_err(|e| failed(&format!("read naac://{id}/{path}"), e))
        })
    }

    pub fn data_write(self: &Arc<Self>, path: String, bytes: Vec<u8>) -> Pending {
        let me = self.clone();
        Box::pin(async move {
            let (client, user, _permit) = me.data_node().await?;
            let scratch = tempfile::tempdir_in(me.home.root())
                .map_err(|e| failed("make a scratch dir", e.into()))?;
            let tree = scratch.path().join("upload");
            let file = tree.join(&path);
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(|e| failed("make the tree", e.into()))?;
            }
            std::fs::write(&file, &bytes).map_err(|e| failed("write the file", e.into()))?;
            let put = crate::store::put_spread(&client, &me.home, &user, &tree, true)
                .await
                .map_err(|e| failed("store it", anyhow::anyhow!("{e}")))?;
            Ok(serde_json::json!({
                "id": format!("naac://{}", put.id),
                "path": path,
                "bytes": bytes.len(),
                "private": true,
            }))
        })
    }

    pub fn market(self: &Arc<Self>) -> Pending {
        let me = self.clone();
        Box::pin(async move {
            let mut c = me.market.lock().await;
            if c.at.is_none_or(|t| t.elapsed() >= FRESH) {
                c.value = crate::market::offers_json(&me.join, me.mdns, LISTEN)
                    .await
                    .map_err(|e| failed("listen to the market", e))?;
                c.at = Some(Instant::now());
            }
            Ok(c.value.clone())
        })
    }

    pub fn wallet(self: &Arc<Self>, verify: bool) -> Pending {
        let me = self.clone();
        Box::pin(async move {
            let balance = me.naac(&["wallet", "balance", "--json"]).await?;
            let history = me
                .naac(&["wallet", "history", "--json", "--limit", "50"])
                .await?;
            let mut v = serde_json::json!({"balance": balance, "history": history});
            if verify {
                v["verify"] = me.naac(&["wallet", "verify", "--json"]).await?;
            }
            Ok(v)
        })
    }

    /// Runs this binary with `args` against this node's data dir; its JSON output.
    async fn naac(&self, args: &[&str]) -> Result<serde_json::Value, Problem> {
        let what = format!("naac {}", args.join(" "));
        let exe = std::env::current_exe()
            .map_err(|e| Problem::internal(format!("find this program: {e}")))?;
        let child = tokio::process::Command::new(exe)
            .args(args)
            .env("NAAC_HOME", self.home.root())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(WALLET_TIMEOUT, child)
            .await
            .map_err(|_| {
                Problem::new(
                    504,
                    "gateway timeout",
                    format!("{what} took over {WALLET_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| Problem::internal(format!("run {what}: {e}")))?;
        // `verify --json` prints `{"ok": false, …}` and fails: that is an answer.
        match serde_json::from_slice(&out.stdout) {
            Ok(v) => Ok(v),
            Err(_) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let err = err.trim().trim_start_matches("error: ");
                Err(Problem::new(502, "bad gateway", format!("{what}: {err}")))
            }
        }
    }

    pub fn policy(&self) -> Result<serde_json::Value, Problem> {
        let file = self.home.policy();
        let p = naac_types::policy::Policy::load(&file).map_err(policy_problem)?;
        crate::policy::policy_json(&p, &file).map_err(|e| Problem::internal(format!("{e:#}")))
    }

    pub fn set_policy(&self, changes: Vec<(String, String)>) -> Result<serde_json::Value, Problem> {
        if changes.is_empty() {
            return Err(Problem::bad_request(
                "no keys to set: send {\"KEY\": \"VALUE\", …}",
            ));
        }
        self.home
            .ensure()
            .map_err(|e| Problem::internal(format!("{e:#}")))?;
        let file = self.home.policy();
        let mut text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Problem::internal(format!("read {}: {e}", file.display()))),
        };
        for (k, v) in &changes {
            text = naac_types::policy::set_key(&text, &file, k, v)
                .map_err(|e| policy_problem(e).with_field(Some(k.clone())))?;
        }
        crate::policy::write_atomic(&file, &text)
            .map_err(|e| Problem::internal(format!("{e:#}")))?;
        tracing::info!(
            "policy: {} set through the API",
            changes
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.policy()
    }
}

fn policy_problem(e: naac_types::policy::PolicyError) -> Problem {
    let detail = match &e.hint {
        Some(h) => format!("{e}\nhint: {h}"),
        None => e.to_string(),
    };
    Problem::bad_request(detail).with_field(e.field.clone())
}

/// Most `/out` files listed per task.
const MAX_FILES: usize = 100;

/// Tasks `from..from + limit` of a job with `total` tasks whose results are in `out`.
pub fn tasks(
    out: &std::path::Path,
    summary: Option<&serde_json::Value>,
    total: u64,
    from: u64,
    limit: u64,
) -> serde_json::Value {
    let end = total.min(from.saturating_add(limit));
    // The index of accepted results, written when the run ends.
    let mut records = std::collections::HashMap::new();
    if let Ok(text) = std::fs::read_to_string(out.join("tasks.jsonl")) {
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(t) = v["task"].as_u64()
                && (from..end).contains(&t)
            {
                records.insert(t, v);
            }
        }
    }
    let failures: std::collections::HashMap<u64, &serde_json::Value> = summary
        .and_then(|s| s["failures"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|f| Some((f["task"].as_u64()?, f)))
        .collect();
    let list: Vec<serde_json::Value> = (from..end)
        .map(|i| {
            let dir = out.join("tasks").join(i.to_string());
            let mut v = serde_json::json!({"index": i});
            if dir.is_dir() {
                v["state"] = "accepted".into();
                let mut files = Vec::new();
                list_files(&dir.join("out"), "", &mut files);
                v["files"] = files.into();
            } else if let Some(f) = failures.get(&i) {
                v["state"] = "failed".into();
                v["failure"] = (*f).clone();
            } else {
                v["state"] = "open".into();
            }
            if let Some(r) = records.remove(&i) {
                v["result"] = r;
            }
            v
        })
        .collect();
    serde_json::json!({"total": total, "from": from, "tasks": list})
}

fn list_files(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if out.len() >= MAX_FILES {
            return;
        }
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        match e.file_type() {
            Ok(t) if t.is_dir() => list_files(&e.path(), &format!("{name}/"), out),
            Ok(t) if t.is_file() => out.push(name),
            _ => {}
        }
    }
}
