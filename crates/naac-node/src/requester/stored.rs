//! Checkpoints kept in the store (`[output] store = true`), so a task resumes from its last
//! checkpoint even after its requester restarted: each task's latest checkpoint is put into
//! the store (2-of-4, one upload at a time, newer ones replacing older ones still waiting)
//! and noted in `DIR/checkpoints.jsonl`; a run into the same dir reads that file and hands
//! providers the stored checkpoint to resume from, to read from its storage hosts. A
//! checkpoint replaced, or of a task that ended, is removed from its hosts.
//!
//! Checkpoints are stored as they are, not encrypted: the storage hosts can read a guest's
//! state, as the provider that ran it could. Each is audited and repaired like any data the
//! user stored, and is named in its user's `naac store ls`.

use crate::store::put::{self, PutOptions};
use naac_net::{Client, Keypair, PeerId};
use naac_proto::BlobSource;
use naac_store::StoreId;
use naac_types::ContentId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The record of `DIR/checkpoints.jsonl`, one line per checkpoint stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Line {
    task: u32,
    /// The checkpoint's content id (hex).
    id: String,
    /// `naac://<manifest>`; the checkpoint is its one file, `checkpoint`.
    url: String,
    /// Peer ids of the hosts that took it.
    hosts: Vec<String>,
}

/// The name of the one file of a stored checkpoint.
const FILE: &str = "checkpoint";

/// A checkpoint in the store.
#[derive(Clone, Debug)]
struct Saved {
    id: ContentId,
    manifest: StoreId,
    hosts: Vec<PeerId>,
}

/// One finished upload.
type Upload = (u32, Result<Saved, String>);

/// The run's checkpoints going to the store.
pub struct StoredCheckpoints {
    client: Client,
    home: crate::Home,
    user: Keypair,
    out_dir: PathBuf,
    /// The latest checkpoint of each task not yet uploaded.
    waiting: BTreeMap<u32, (ContentId, Arc<Vec<u8>>)>,
    busy: Option<oneshot::Receiver<Upload>>,
    saved: HashMap<u32, Saved>,
}

impl StoredCheckpoints {
    pub fn new(client: Client, home: crate::Home, user: Keypair, out_dir: &Path) -> Self {
        Self {
            client,
            home,
            user,
            out_dir: out_dir.to_path_buf(),
            waiting: BTreeMap::new(),
            busy: None,
            saved: HashMap::new(),
        }
    }

    /// The checkpoints an earlier run into `out_dir` stored, the latest per task, as where
    /// providers read them; they also become this run's to remove when replaced.
    pub fn load(&mut self) -> Vec<(u32, BlobSource)> {
        let text =
            std::fs::read_to_string(self.out_dir.join("checkpoints.jsonl")).unwrap_or_default();
        let mut latest: BTreeMap<u32, Saved> = BTreeMap::new();
        for line in text.lines() {
            let Ok(l) = serde_json::from_str::<Line>(line) else {
                continue;
            };
            let (Some(id), Ok((manifest, _))) = (
                naac_types::ContentId::from_hex(&l.id),
                crate::store::parse_url(&l.url),
            ) else {
                continue;
            };
            let hosts = l.hosts.iter().filter_map(|h| h.parse().ok()).collect();
            latest.insert(
                l.task,
                Saved {
                    id,
                    manifest,
                    hosts,
                },
            );
        }
        let out = latest.iter().map(|(task, s)| (*task, source(s))).collect();
        self.saved.extend(latest);
        out
    }

    /// Takes the checkpoint store's changes: uploads what is new, removes what went.
    pub fn apply(&mut self, changes: Vec<super::checkpoints::Change>) {
        use super::checkpoints::Change;
        for c in changes {
            match c {
                Change::Kept(task, id, bytes) => {
                    self.waiting.insert(task, (id, bytes));
                }
                Change::Gone(task) => {
                    self.waiting.remove(&task);
                    if let Some(old) = self.saved.remove(&task) {
                        self.remove(old);
                    }
                }
            }
        }
    }

    /// Notes a finished upload and starts the next one.
    pub fn poll(&mut self) {
        if let Some(rx) = &mut self.busy {
            match rx.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => return,
                Err(oneshot::error::TryRecvError::Closed) => self.busy = None,
                Ok((task, r)) => {
                    self.busy = None;
                    match r {
                        Ok(saved) => self.saved_one(task, saved),
                        Err(e) => tracing::warn!("checkpoint of task {task} not stored: {e}"),
                    }
                }
            }
        }
        let Some((task, (id, bytes))) = self.waiting.pop_first() else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        self.busy = Some(rx);
        let (client, home, user) = (self.client.clone(), self.home.clone(), self.user.clone());
        let dir = self.out_dir.join(".checkpoints");
        tokio::spawn(async move {
            let r = upload(&client, &home, &user, &dir, task, id, &bytes).await;
            let _ = tx.send((task, r.map_err(|e| format!("{e:#}"))));
        });
    }

    fn saved_one(&mut self, task: u32, saved: Saved) {
        let line = Line {
            task,
            id: saved.id.to_hex(),
            url: format!("naac://{}", saved.manifest),
            hosts: saved.hosts.iter().map(ToString::to_string).collect(),
        };
        let path = self.out_dir.join("checkpoints.jsonl");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                let mut b = serde_json::to_vec(&line).unwrap_or_default();
                b.push(b'\n');
                f.write_all(&b)?;
                f.sync_data()
            });
        if let Err(e) = written {
            tracing::warn!("{}: {e}", path.display());
        }
        tracing::debug!("checkpoint of task {task} stored as {}", line.url);
        if let Some(old) = self.saved.insert(task, saved) {
            self.remove(old);
        }
    }

    /// Asks a replaced checkpoint's hosts to drop it, in the background.
    fn remove(&self, old: Saved) {
        let (client, home, user) = (self.client.clone(), self.home.clone(), self.user.clone());
        tokio::spawn(async move {
            crate::store::remove_from(&client, &user, &old.manifest, old.hosts.into_iter()).await;
            if let Ok(c) = crate::store::Catalog::open(&home.store_db()) {
                let _ = c.mark_removed(&old.manifest);
            }
        });
    }

    /// The run is over: every checkpoint it kept is removed from the store.
    pub async fn finish(mut self) {
        for (_, s) in std::mem::take(&mut self.saved) {
            crate::store::remove_from(&self.client, &self.user, &s.manifest, s.hosts.into_iter())
                .await;
            if let Ok(c) = crate::store::Catalog::open(&self.home.store_db()) {
                let _ = c.mark_removed(&s.manifest);
            }
        }
        let _ = std::fs::remove_file(self.out_dir.join("checkpoints.jsonl"));
        let _ = std::fs::remove_dir_all(self.out_dir.join(".checkpoints"));
    }
}

fn source(s: &Saved) -> BlobSource {
    BlobSource {
        id: s.id,
        manifest: s.manifest,
        path: FILE.into(),
        hosts: crate::store::get::source_hosts(&s.hosts),
        token: None,
    }
}

/// Puts one checkpoint into the store, 2-of-4.
async fn upload(
    client: &Client,
    home: &crate::Home,
    user: &Keypair,
    dir: &Path,
    task: u32,
    id: ContentId,
    bytes: &[u8],
) -> anyhow::Result<Saved> {
    let at = dir.join(task.to_string());
    std::fs::create_dir_all(&at)?;
    let file = at.join(FILE);
    std::fs::write(&file, bytes)?;
    let opts = PutOptions {
        private: false,
        k: 2,
        n: 4,
        happy: put::default_happy(2, 4),
        days: 7,
        timeout: Duration::from_secs(120),
        discover: Duration::from_secs(1),
        max_price: None,
    };
    let done = put::put(client, home, user, &file, &opts, None).await;
    let _ = std::fs::remove_dir_all(&at);
    let done = done.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Saved {
        id,
        manifest: done.id,
        hosts: done.placed.iter().map(|(_, p)| *p).collect(),
    })
}
