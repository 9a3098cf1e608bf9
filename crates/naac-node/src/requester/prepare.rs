//! What a run needs before it starts, checked up front: the job file, its modules compiled,
//! every task's input files; and the wire form of a task ([`task_spec`]) with the blobs it
//! names registered for providers to fetch.

use anyhow::Context as _;
use naac_proto::{BlobSource, ResponseBody, TaskSpec};
use naac_sandbox::{Prepared, Sandbox};
use naac_types::{ContentId, Job, JobId};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Why a run could not go ahead or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The user's input is wrong (job file, module, input files): exit code 2.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    /// Anything else: exit code 3 or above.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

/// Largest input (or stdin) file: it must fit in one message with room to spare.
pub const MAX_INPUT_BYTES: u64 = naac_proto::MAX_MESSAGE_BYTES - (1 << 20);

/// Content the requester serves to providers (modules, inputs) by content id, and the
/// files of stored data its tasks name, which providers read from storage hosts instead.
#[derive(Default)]
pub struct Blobs {
    served: HashMap<ContentId, Arc<Vec<u8>>>,
    /// Stored files by `naac://` URL: content id and length, from their manifests.
    stored: HashMap<String, (ContentId, u64)>,
    /// Where providers read stored blobs, by content id.
    sources: HashMap<ContentId, BlobSource>,
    /// Where they read the module, when it is stored data.
    pub module: Option<BlobSource>,
    /// Blobs handed to providers, and their bytes.
    pub fetches: u64,
    pub fetched_bytes: u64,
    /// How this run reads private data (its user's key and the data tokens it was given).
    pub access: Option<crate::store::DataAccess>,
    /// The pass each private manifest was opened with: handed on to each provider.
    passes: HashMap<naac_store::StoreId, naac_proto::store::DataPass>,
    /// Tokens handed on, by provider and manifest, and when.
    handed: HashMap<(naac_net::PeerId, naac_store::StoreId), (String, std::time::Instant)>,
}

/// Most tokens handed on kept (then the cache starts again).
const MAX_HANDED: usize = 4096;

impl Blobs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a blob to serve.
    pub fn insert(&mut self, id: ContentId, bytes: Arc<Vec<u8>>) {
        self.served.entry(id).or_insert(bytes);
    }

    /// A blob this requester serves.
    pub fn get(&self, id: &ContentId) -> Option<&Arc<Vec<u8>>> {
        self.served.get(id)
    }

    /// A provider's `Fetch`: the blob (or one `more` knows, a checkpoint), counted.
    pub fn serve<'a>(
        &'a mut self,
        id: &ContentId,
        more: impl FnOnce(&ContentId) -> Option<&'a Arc<Vec<u8>>>,
    ) -> ResponseBody {
        match self.served.get(id).or_else(|| more(id)) {
            Some(b) => {
                self.fetches += 1;
                self.fetched_bytes += b.len() as u64;
                ResponseBody::Blob(b.to_vec())
            }
            None => ResponseBody::NotFound,
        }
    }

    /// Where providers read the module, when it is stored data (a private one's token is
    /// kept to hand on).
    pub fn set_module(&mut self, source: Option<BlobSource>) {
        self.module = source.map(|mut s| {
            if let Some(token) = s.token.take() {
                let pass = naac_proto::store::DataPass { token, user: None };
                self.passes.insert(s.manifest, pass);
            }
            s
        });
    }

    /// Where providers read a blob that is stored data (a checkpoint an earlier run stored).
    pub fn add_source(&mut self, s: BlobSource) {
        self.sources.insert(s.id, s);
    }

    /// What was served, for `summary.json`.
    pub fn summary(&self) -> crate::output::ServedSummary {
        crate::output::ServedSummary {
            blobs: self.fetches,
            bytes: self.fetched_bytes,
            stored_inputs: self.stored.len() as u64,
        }
    }

    /// The small blobs `tasks` take that this requester serves, to send along with them
    /// (see [`naac_proto::Assign::inline`]).
    /// They count as served.
    pub fn inline_for(&mut self, tasks: &[TaskSpec]) -> Vec<naac_proto::InlineBlob> {
        let mut seen = std::collections::HashSet::new();
        let mut total = 0;
        let mut out = Vec::new();
        let ids = tasks
            .iter()
            .flat_map(|t| t.inputs.iter().map(|i| &i.1).chain(t.stdin.as_ref()));
        for id in ids {
            let Some(b) = self.served.get(id) else {
                continue;
            };
            if b.len() > naac_proto::MAX_INLINE_BLOB
                || total + b.len() > naac_proto::MAX_INLINE_BYTES
                || !seen.insert(*id)
            {
                continue;
            }
            total += b.len();
            self.fetches += 1;
            self.fetched_bytes += b.len() as u64;
            out.push(naac_proto::InlineBlob {
                id: *id,
                bytes: b.to_vec(),
            });
        }
        out
    }

    /// Where `provider` reads the stored blobs among `tasks`' inputs; for private data, with
    /// the run's data token handed on to it.
    pub fn sources_for(
        &mut self,
        tasks: &[TaskSpec],
        provider: &naac_net::PeerId,
    ) -> Vec<BlobSource> {
        let mut out = self.public_sources_for(tasks);
        for s in &mut out {
            s.token = self.token_for(provider, &s.manifest);
        }
        out
    }

    /// The run's token for `m` handed on to `provider` (`None`: `m` is public).
    fn token_for(
        &mut self,
        provider: &naac_net::PeerId,
        m: &naac_store::StoreId,
    ) -> Option<String> {
        let pass = self.passes.get(m)?;
        // Handed on again halfway through its life.
        let fresh = crate::store::HAND_ON_LIFE / 2;
        if let Some((t, at)) = self.handed.get(&(*provider, *m))
            && at.elapsed() < fresh
        {
            return Some(t.clone());
        }
        let user = &self.access.as_ref()?.user;
        match crate::store::hand_to(pass, user, provider, m) {
            Ok(t) => {
                if self.handed.len() >= MAX_HANDED {
                    self.handed.clear();
                }
                self.handed
                    .insert((*provider, *m), (t.clone(), std::time::Instant::now()));
                Some(t)
            }
            Err(e) => {
                tracing::warn!("hand the data token for naac://{} on: {e:#}", m.short());
                None
            }
        }
    }

    /// Where the providers of `tasks` read the stored blobs among their inputs.
    fn public_sources_for(&self, tasks: &[TaskSpec]) -> Vec<BlobSource> {
        let mut seen = std::collections::HashSet::new();
        let inputs = tasks
            .iter()
            .flat_map(|t| {
                let inputs = t.inputs.iter().map(|i| &i.1);
                inputs.chain(t.stdin.as_ref()).chain(t.resume.as_ref())
            })
            .filter(|id| seen.insert(**id))
            .filter_map(|id| self.sources.get(id).cloned());
        self.module.iter().cloned().chain(inputs).collect()
    }

    /// Opens the stored data every task names (`naac://<id>/<path>` inputs and stdin) and
    /// notes each file's hash and length from its manifest, so no task reads it here.
    /// Fails, naming the task and URL, on a file the data does not have or one too large.
    pub async fn open_stored(
        &mut self,
        client: &naac_net::Client,
        job: &Job,
    ) -> anyhow::Result<()> {
        let mut urls: Vec<(u64, String)> = Vec::new();
        for i in 0..job.task_count() {
            if i > 0 && !job.has_files() {
                break;
            }
            let params = job.task(i).map_err(job_error)?;
            for p in params.inputs.iter().chain(params.stdin.iter()) {
                if let Some(u) = naac_types::job::store_url(p) {
                    urls.push((i, u.to_string()));
                }
            }
        }
        let mut opened: HashMap<naac_store::StoreId, crate::store::get::Opened> = HashMap::new();
        for (task, url) in urls {
            if self.stored.contains_key(&url) {
                continue;
            }
            let (m, path) = crate::store::parse_url(&url)?;
            let path = path.with_context(|| {
                format!("task {task}: {url} names no file (naac://<id>/<path in the data>)")
            })?;
            let o = match opened.entry(m) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let o = crate::store::open_as(
                        client,
                        &m,
                        Vec::new(),
                        STORE_LOOKUP,
                        self.access.as_ref(),
                    )
                    .await
                    .with_context(|| format!("task {task}: open {url}"))?;
                    if let (true, Some(p)) = (o.manifest.private, &o.pass) {
                        self.passes.insert(m, p.clone());
                    }
                    e.insert(o)
                }
            };
            let f = o
                .manifest
                .files
                .iter()
                .find(|f| f.path == path)
                .with_context(|| {
                    format!("task {task}: naac://{m} holds no file {path:?} (`naac store status` lists what you stored)")
                })?;
            anyhow::ensure!(
                f.len <= MAX_INPUT_BYTES,
                "task {task}: {url} is {} bytes; the limit is {MAX_INPUT_BYTES}\nhint: split the input across tasks",
                f.len
            );
            self.stored.insert(url, (f.hash, f.len));
            let hosts = o.source_hosts();
            self.sources.insert(
                f.hash,
                BlobSource {
                    id: f.hash,
                    manifest: m,
                    path,
                    hosts,
                    token: None,
                },
            );
        }
        Ok(())
    }
}

/// How long to look for the storage hosts of a job's stored inputs.
const STORE_LOOKUP: std::time::Duration = std::time::Duration::from_secs(5);

/// A job that passed every check and is ready to run.
pub struct PreparedJob {
    pub job: Job,
    pub id: JobId,
    pub(crate) module_id: ContentId,
    pub(crate) module_bytes: Arc<Vec<u8>>,
    /// Where providers read the module, when it is stored data.
    pub(crate) module_source: Option<BlobSource>,
    pub(crate) reduce: Option<(Prepared, Vec<String>)>,
    pub(crate) verifier: Option<Prepared>,
    /// A job of stages (`[[stage]]`), in task order; empty for a job of one. `job` is then
    /// the whole pipeline as one job ([`naac_types::job::pipeline::Pipeline::as_job`]).
    pub stages: Vec<super::stages::PreparedStage>,
}

impl PreparedJob {
    pub fn module_id(&self) -> ContentId {
        self.module_id
    }

    /// Why a host cannot run this job's tasks (for a job of stages: every stage's, since
    /// the scheduler gives any host tasks of any stage).
    /// `rtt`: the round trip measured to the host, for `max_latency_ms`. For a job of
    /// stages, a host that can run any stage is usable (see [`PreparedJob::stage_mask`]);
    /// one that can run none gets every stage's reasons.
    pub fn rule_out(
        &self,
        status: &naac_proto::HostStatus,
        rtt: Option<std::time::Duration>,
    ) -> Vec<String> {
        let per_job = |j: &Job| -> Vec<String> {
            let far = crate::explain::too_far(&j.requirements, rtt);
            crate::explain::rule_out_job(j, status)
                .into_iter()
                .chain(far)
                .collect()
        };
        if self.stages.is_empty() {
            return per_job(&self.job);
        }
        let mut why: Vec<String> = Vec::new();
        for s in &self.stages {
            let w = per_job(&s.job);
            if w.is_empty() {
                return Vec::new();
            }
            for w in w {
                if !why.contains(&w) {
                    why.push(w);
                }
            }
        }
        why
    }

    /// The stages of a job of stages this host may not run (bit `s` for stage `s`): their
    /// requirements or limits rule it out.
    pub fn stage_mask(
        &self,
        status: &naac_proto::HostStatus,
        rtt: Option<std::time::Duration>,
    ) -> u64 {
        let mut mask = 0u64;
        for (i, s) in self.stages.iter().enumerate().take(64) {
            let far = crate::explain::too_far(&s.job.requirements, rtt);
            if far.is_some() || !crate::explain::rule_out_job(&s.job, status).is_empty() {
                mask |= 1 << i;
            }
        }
        mask
    }
}

/// Modules of stored data fetched before a job is prepared, by `naac://` URL: their bytes
/// and where providers read them.
pub type StoredModules = HashMap<String, (Vec<u8>, BlobSource)>;

/// Loads the job file, reads and compiles its modules and checks every task's input files.
pub fn prepare(job_file: &Path, sandbox: &Sandbox) -> Result<PreparedJob, RunError> {
    prepare_with(job_file, sandbox, &StoredModules::new())
}

/// [`prepare`], with the job's modules that are stored data fetched already ([`fetch_modules`]).
pub fn prepare_with(
    job_file: &Path,
    sandbox: &Sandbox,
    stored: &StoredModules,
) -> Result<PreparedJob, RunError> {
    let text = std::fs::read_to_string(job_file).unwrap_or_default();
    if naac_types::job::pipeline::has_stages(&text) {
        return super::stages::prepare(job_file, sandbox, stored);
    }
    let job = Job::load(job_file).map_err(|e| RunError::Invalid(job_error(e)))?;
    let load = |p: &Path| load_module(p, sandbox, stored);
    let (module_id, module_bytes, _) = load(&job.module)?;
    let module_source = naac_types::job::store_url(&job.module)
        .and_then(|u| stored.get(u))
        .map(|(_, s)| s.clone());
    let reduce = match &job.reduce {
        Some(r) => {
            let (_, _, prepared) = load(&r.module)?;
            Some((prepared, r.args.clone()))
        }
        None => None,
    };
    let verifier = match &job.verify.verifier {
        Some(v) => Some(load(v)?.2),
        None => None,
    };
    check_inputs(&job)?;
    Ok(PreparedJob {
        id: job_id(&job, &module_id),
        job,
        module_id,
        module_bytes: Arc::new(module_bytes),
        module_source,
        reduce,
        verifier,
        stages: Vec::new(),
    })
}

/// Every task's input files must exist, and fit in a message, before anything runs.
pub(super) fn check_inputs(job: &Job) -> Result<(), RunError> {
    for i in 0..job.task_count() {
        if i > 0 && !job.has_files() {
            break;
        }
        let params = job.task(i).map_err(|e| RunError::Invalid(job_error(e)))?;
        for path in params.inputs.iter().chain(params.stdin.iter()) {
            let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if len > MAX_INPUT_BYTES {
                return Err(RunError::Invalid(anyhow::anyhow!(
                    "input file {} of task {i} is {len} bytes; the limit is {MAX_INPUT_BYTES}\nhint: split the input across tasks",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// A fresh id for a run of `job`.
pub(super) fn job_id(job: &Job, module_id: &ContentId) -> JobId {
    let mut unique = Vec::new();
    unique.extend_from_slice(&std::process::id().to_le_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    unique.extend_from_slice(&nanos.to_le_bytes());
    JobId::derive(&job.fingerprint(module_id), &unique)
}

/// Fetches the job's modules that are stored data (`naac://<id>/<path>`) from any `k` of
/// their storage hosts, each checked against its manifest.
/// A private module's source carries the run's own token (bound to its user), which
/// [`Blobs::set_module`] hands on to each provider.
pub async fn fetch_modules(
    client: &naac_net::Client,
    job_file: &Path,
    access: Option<&crate::store::DataAccess>,
) -> Result<StoredModules, RunError> {
    let job = Job::load(job_file).map_err(|e| RunError::Invalid(job_error(e)))?;
    let mut out = StoredModules::new();
    for url in job.stored_modules() {
        let fetched = async {
            let (m, path) = crate::store::parse_url(url)?;
            let path = path
                .with_context(|| format!("{url} names no file (naac://<id>/<path in the data>)"))?;
            let o = crate::store::open_as(client, &m, Vec::new(), STORE_LOOKUP, access).await?;
            let f = o
                .manifest
                .files
                .iter()
                .find(|f| f.path == path)
                .with_context(|| format!("naac://{m} holds no file {path:?}"))?;
            anyhow::ensure!(
                f.len <= naac_types::job::MAX_MODULE_BYTES,
                "{url} is {} bytes, above the {}-byte module limit",
                f.len,
                naac_types::job::MAX_MODULE_BYTES
            );
            let id = f.hash;
            let bytes = crate::store::get::read_file(client, &o, &path).await?;
            let hosts = o.source_hosts();
            let token = o.pass.as_ref().filter(|_| o.manifest.private);
            let source = BlobSource {
                id,
                manifest: m,
                path,
                hosts,
                token: token.map(|p| p.token.clone()),
            };
            anyhow::Ok((bytes, source))
        }
        .await
        .with_context(|| format!("module {url}"))
        .map_err(RunError::Invalid)?;
        out.insert(url.to_string(), fetched);
    }
    Ok(out)
}

pub(super) fn job_error(e: naac_types::JobError) -> anyhow::Error {
    match &e.hint {
        Some(h) => anyhow::anyhow!("{e}\nhint: {h}"),
        None => anyhow::anyhow!("{e}"),
    }
}

pub(super) fn load_module(
    path: &Path,
    sandbox: &Sandbox,
    stored: &StoredModules,
) -> Result<(ContentId, Vec<u8>, Prepared), RunError> {
    let bytes = match naac_types::job::store_url(path) {
        Some(url) => stored
            .get(url)
            .map(|(b, _)| b.clone())
            .with_context(|| format!("module {url} was not fetched from the store"))
            .map_err(RunError::Invalid)?,
        None => std::fs::read(path)
            .with_context(|| format!("read module {}", path.display()))
            .map_err(RunError::Invalid)?,
    };
    let id = ContentId::of(&bytes);
    let prepared = sandbox
        .compile(&id, &bytes)
        .map_err(|e| RunError::Invalid(anyhow::anyhow!("module {}: {e}", path.display())))?;
    Ok((id, bytes, prepared))
}

/// Builds the wire form of one task, registering its input blobs for providers to fetch.
pub fn task_spec(
    job: &Job,
    module: ContentId,
    index: u32,
    attempt: u32,
    blobs: &mut Blobs,
) -> anyhow::Result<TaskSpec> {
    task_spec_fed(job, module, index, attempt, blobs, None)
}

/// What a task of a later stage takes from the tasks before it: stdin, and files for `/in`
/// (already served as blobs).
#[derive(Debug, Default)]
pub struct Fed {
    pub stdin: Option<ContentId>,
    pub inputs: Vec<(String, ContentId)>,
}

/// [`task_spec`] for task `index` of `job`, fed from earlier stages: `fed`'s stdin
/// replaces the job's, its files join the job's own.
pub fn task_spec_fed(
    job: &Job,
    module: ContentId,
    index: u32,
    attempt: u32,
    blobs: &mut Blobs,
    fed: Option<Fed>,
) -> anyhow::Result<TaskSpec> {
    let params = job.task(index as u64).map_err(job_error)?;
    let mut add = |path: &Path| -> anyhow::Result<ContentId> {
        if let Some(url) = naac_types::job::store_url(path) {
            return blobs
                .stored
                .get(url)
                .map(|f| f.0)
                .with_context(|| format!("{url} was not opened before the run"));
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("read input {}", path.display()))?;
        let id = ContentId::of(&bytes);
        blobs.served.entry(id).or_insert_with(|| Arc::new(bytes));
        Ok(id)
    };
    let mut stdin = params.stdin.as_deref().map(&mut add).transpose()?;
    let mut inputs = Vec::with_capacity(params.inputs.len());
    for p in &params.inputs {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("input path has no file name")?;
        inputs.push((name, add(p)?));
    }
    if let Some(fed) = fed {
        stdin = fed.stdin.or(stdin);
        inputs.extend(fed.inputs);
    }
    // Replicas of a task (same module, args and inputs) get the same seed.
    let mut h = blake3::Hasher::new_derive_key("naac task seed v1");
    h.update(&module.0);
    for a in &params.args {
        h.update(&(a.len() as u64).to_le_bytes());
        h.update(a.as_bytes());
    }
    if let Some(s) = &stdin {
        h.update(&s.0);
    }
    for (n, id) in &inputs {
        h.update(n.as_bytes());
        h.update(&id.0);
    }
    // The environment is part of the task's content (bound into the seed, and so into
    // every result record); a task with none keeps the seed it always had.
    if !params.env.is_empty() {
        h.update(b"env");
        for (k, v) in &params.env {
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
    }
    Ok(TaskSpec {
        index,
        attempt,
        args: params.args,
        stdin,
        inputs,
        seed: ContentId(*h.finalize().as_bytes()),
        resume: None,
        env: params.env,
    })
}
