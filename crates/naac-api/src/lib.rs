//! The node's HTTP API (the only crate that knows HTTP): routes under `/v1` over a
//! [`Backend`] the node implements (its job queue), bearer-token authentication, RFC 9457
//! problem details for every error, and the [`client`] the CLI talks to it with.
//!
//! Routes: `GET /v1/node`; `POST /v1/jobs` (`multipart/form-data`: a part `job` with the
//! job file's TOML, one part per file it references, named by its path relative to the job
//! file; an `Idempotency-Key` header makes a retried submit return the same job); `GET
//! /v1/jobs`; `GET /v1/jobs/{id}`; `DELETE /v1/jobs/{id}` (cancel); `GET
//! /v1/jobs/{id}/tasks/{index}/stdout`, `…/stderr` and `…/out/{path}` (a task's output);
//! `GET /v1/jobs/{id}/events` (Server-Sent Events); `GET /v1/jobs/{id}/archive` (a tar).

pub mod client;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use naac_token::Operation;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where the API listens unless told otherwise: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";
/// Most parts in one submit.
const MAX_PARTS: usize = 4096;

/// One job as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub name: String,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Milliseconds since the Unix epoch.
    pub submitted_ms: u64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// Where its results go on the node.
    pub out_dir: String,
    /// Why it failed or was refused.
    pub error: Option<String>,
    /// Its `summary.json` once it ran.
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
    /// While it runs: tasks `total`, `succeeded`, `failed`, `running`, `providers`, and
    /// `waiting` (why no host may run it now, when none may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub progress: Option<serde_json::Value>,
}

/// A page of jobs, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// The `cursor` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Jobs per page unless `limit` says otherwise, and the most a page holds.
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// An error as RFC 9457 problem details.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{title}: {detail}")]
pub struct Problem {
    pub status: u16,
    pub title: String,
    pub detail: String,
    /// Seconds to wait before trying again (`429`).
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: u16, title: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "bad request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(409, "conflict", detail)
    }

    pub fn too_many(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(429, "too many requests", detail)
        }
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(500, "internal error", detail)
    }
}

/// RFC 9457 problem details.
#[derive(Serialize, utoipa::ToSchema)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: "about:blank",
            title: &self.title,
            status: self.status,
            detail: &self.detail,
        };
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(body)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// A job as submitted: the job file and the files it names, by path relative to it.
#[derive(Debug, Default)]
pub struct Upload {
    pub job: Vec<u8>,
    pub files: Vec<(String, Vec<u8>)>,
    pub idempotency_key: Option<String>,
}

/// What the node does behind the routes. Calls may block (a database); the server runs
/// them off its event loop.
pub trait Backend: Send + Sync + 'static {
    /// Queues a job once `may` allows its name; `400` for a job that cannot run (naming
    /// the file, line and field).
    fn submit(
        &self,
        upload: Upload,
        may: &dyn Fn(&str) -> Result<(), Problem>,
    ) -> Result<JobView, Problem>;
    /// At most `limit` jobs, newest first, from `cursor` (a page's `next`).
    fn jobs(&self, limit: usize, cursor: Option<&str>) -> Result<JobPage, Problem>;
    fn job(&self, id: &str) -> Result<JobView, Problem>;
    /// Cancels a queued or running job (a finished one is left as it is).
    fn cancel(&self, id: &str) -> Result<JobView, Problem>;
    /// A file of task `index`'s accepted result: `stdout`, `stderr` or `out/PATH` (`PATH`
    /// already checked to stay inside the task's directory).
    fn task_file(&self, id: &str, index: u64, file: &str) -> Result<Vec<u8>, Problem>;
    /// The node: identity, roles, addresses.
    fn node(&self) -> serde_json::Value;
    /// Job `id`'s results directory (`404` before it has one).
    fn results_dir(&self, id: &str) -> Result<std::path::PathBuf, Problem>;
    /// Ticks whenever a job changes (queued, started, progressed, ended): what the event
    /// streams wait on.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}

#[derive(Clone)]
struct Ctx {
    backend: Arc<dyn Backend>,
    verifier: naac_token::Verifier,
    max_upload: usize,
}

/// The API's routes over `backend`, every one behind a token `verifier` accepts; a submit
/// holds at most `max_upload` bytes.
pub fn router(
    backend: Arc<dyn Backend>,
    verifier: naac_token::Verifier,
    max_upload: usize,
) -> Router {
    let ctx = Ctx {
        backend,
        verifier,
        max_upload,
    };
    let (routes, doc) = documented();
    routes
        // A wildcard path: documented as `{path}`, routed as axum's `{*path}`.
        .route("/v1/jobs/{id}/tasks/{index}/out/{*path}", get(task_out))
        .route("/v1/openapi.json", get(move || async move { Json(doc) }))
        .layer(DefaultBodyLimit::max(max_upload))
        .layer(middleware::from_fn_with_state(ctx.clone(), authorize))
        .with_state(ctx)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "naac node API", version = "1", description = "Jobs handed to a naac node: submit, follow, cancel, fetch results. Every route needs `Authorization: Bearer TOKEN` (the node's `api.token`)."),
    paths(task_out),
    components(schemas(JobView, JobPage, ProblemBody)),
    modifiers(&Bearer)
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The documented routes and the OpenAPI document made from the same handlers.
fn documented() -> (Router<Ctx>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    use utoipa_axum::{router::OpenApiRouter, routes};
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(node))
        .routes(routes!(jobs, submit))
        .routes(routes!(job, cancel))
        .routes(routes!(task_stdout))
        .routes(routes!(task_stderr))
        .routes(routes!(events))
        .routes(routes!(archive))
        .split_for_parts()
}

/// The API's OpenAPI 3.1 document (also served at `/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().1
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// The name of the cookie the dashboard's login sets (the same token as the bearer).
pub const COOKIE: &str = "naac_token";

/// The token a request carries: `Authorization: Bearer TOKEN`, else the login cookie.
fn presented(h: &HeaderMap) -> Option<&str> {
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return v.strip_prefix("Bearer ").map(str::trim);
    }
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
}

/// What a route does, for the token's checks; `None` where the handler decides once it
/// knows the job (a submit or a cancel: a token may be limited to jobs by name).
fn operation(req: &Request) -> Option<Operation> {
    let m = req.method();
    if m.is_safe() {
        return Some(Operation::Read);
    }
    let path = req.uri().path();
    if path == "/v1/jobs" && m == axum::http::Method::POST {
        return None;
    }
    if path.starts_with("/v1/jobs/") && m == axum::http::Method::DELETE {
        return None;
    }
    Some(Operation::Admin)
}

/// A verified token, for handlers that check it against a job.
#[derive(Clone)]
struct Presented(Arc<naac_token::Token>);

impl Presented {
    fn allows(&self, op: Operation, job_name: &str) -> Result<(), Problem> {
        self.0
            .authorize(op, Some(job_name), std::time::SystemTime::now())
            .map_err(denied)
    }
}

fn denied(e: naac_token::TokenError) -> Problem {
    match e {
        naac_token::TokenError::Invalid(m) => Problem::new(401, "unauthorized", m),
        naac_token::TokenError::Denied(m) => Problem::new(403, "forbidden", m),
    }
}

/// Lets a request through with a token of this node whose checks allow it (`401` without
/// a valid token, `403` out of its scope); a state-changing one only from no browser
/// origin or this server's own (so a page elsewhere cannot act through a logged-in
/// browser).
async fn authorize(State(ctx): State<Ctx>, mut req: Request, next: Next) -> Response {
    let Some(given) = presented(req.headers()) else {
        return Problem::new(
            401,
            "unauthorized",
            "send a token of this node as `Authorization: Bearer TOKEN` (the CLI reads the node's admin token from api.token in its data dir; `naac api token` makes narrower ones)",
        )
        .into_response();
    };
    let token = match ctx.verifier.verify(given) {
        Ok(t) => t,
        Err(e) => return denied(e).into_response(),
    };
    if !req.method().is_safe() && !same_origin(req.headers()) {
        return Problem::new(
            403,
            "forbidden",
            "a state-changing request from another origin is refused",
        )
        .into_response();
    }
    if let Some(op) = operation(&req)
        && let Err(e) = token.authorize(op, None, std::time::SystemTime::now())
    {
        return denied(e).into_response();
    }
    req.extensions_mut().insert(Presented(Arc::new(token)));
    next.run(req).await
}

fn same_origin(h: &HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin == format!("http://{host}")
}

/// Runs a backend call off the event loop.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Problem::internal(format!("the request's worker failed: {e}")))?
}

/// The node: version, roles, the peers it joined.
#[utoipa::path(get, path = "/v1/node", responses((status = 200, body = Object), (status = 401, body = ProblemBody)))]
async fn node(State(ctx): State<Ctx>) -> Result<Json<serde_json::Value>, Problem> {
    let b = ctx.backend.clone();
    Ok(Json(blocking(move || Ok(b.node())).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Jobs in the page (default 100, at most 1000).
    limit: Option<usize>,
    /// The previous page's `next`.
    cursor: Option<String>,
}

/// The jobs on the node, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/jobs", params(PageQuery), responses((status = 200, body = JobPage), (status = 400, body = ProblemBody), (status = 401, body = ProblemBody)))]
async fn jobs(
    State(ctx): State<Ctx>,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
) -> Result<Json<JobPage>, Problem> {
    let limit = q.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let b = ctx.backend.clone();
    Ok(Json(
        blocking(move || b.jobs(limit, q.cursor.as_deref())).await?,
    ))
}

/// The least time between two events of one stream: a job that changes a thousand times a
/// second is read at most twenty times a second per watcher.
const EVENT_GAP: std::time::Duration = std::time::Duration::from_millis(50);

/// A job's changes as Server-Sent Events, each the job as `GET /v1/jobs/{id}` shows it:
/// `state` when its state changes (the first event is one), `progress` while it runs
/// (tasks accepted, failed, running; providers). The stream ends after the job does.
/// A client that reads slowly misses intermediate progress, never the final state, and
/// holds nothing on the node.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", params(("id" = String, Path)), responses((status = 200, content_type = "text/event-stream", body = String), (status = 404, body = ProblemBody)))]
async fn events(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, Problem> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let b = ctx.backend.clone();
    let mut rx = b.changes();
    rx.mark_unchanged();
    let first = {
        let (b, id) = (b.clone(), id.clone());
        blocking(move || b.job(&id)).await?
    };
    struct Watch {
        b: Arc<dyn Backend>,
        id: String,
        rx: tokio::sync::watch::Receiver<u64>,
        last: Option<JobView>,
        pending: Option<JobView>,
        at: tokio::time::Instant,
    }
    let w = Watch {
        b,
        id,
        rx,
        last: None,
        pending: Some(first),
        at: tokio::time::Instant::now(),
    };
    let stream = futures::stream::unfold(w, |mut w| async move {
        let view = match w.pending.take() {
            Some(v) => v,
            None => loop {
                if w.last.as_ref().is_some_and(ended) {
                    return None;
                }
                // Changes may stop for good (the node shutting down): the stream ends.
                w.rx.changed().await.ok()?;
                tokio::time::sleep_until(w.at + EVENT_GAP).await;
                w.rx.mark_unchanged();
                let (b, id) = (w.b.clone(), w.id.clone());
                let v = blocking(move || b.job(&id)).await.ok()?;
                if w.last.as_ref() != Some(&v) {
                    break v;
                }
            },
        };
        w.at = tokio::time::Instant::now();
        let kind = match &w.last {
            Some(l) if l.state == view.state => "progress",
            _ => "state",
        };
        let event = Event::default()
            .event(kind)
            .json_data(&view)
            .unwrap_or_else(|_| Event::default().event(kind));
        w.last = Some(view);
        Some((Ok::<_, std::convert::Infallible>(event), w))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Whether nothing more will change in `v`: it finished, and a job cancelled while it ran
/// has the summary (or error) its run writes as it stops.
fn ended(v: &JobView) -> bool {
    match v.state.as_str() {
        "done" | "failed" => true,
        "cancelled" => v.started_ms.is_none() || v.summary.is_some() || v.error.is_some(),
        _ => false,
    }
}

/// A job's results directory as a tar (the layout of `naac run`'s results), streamed:
/// the node holds a few chunks of it at a time, whatever its size.
#[utoipa::path(get, path = "/v1/jobs/{id}/archive", params(("id" = String, Path)), responses((status = 200, content_type = "application/x-tar", body = Vec<u8>), (status = 404, body = ProblemBody)))]
async fn archive(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, Problem> {
    let b = ctx.backend.clone();
    let name = id.clone();
    let dir = blocking(move || b.results_dir(&id)).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let w = Chunks {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let mut t = tar::Builder::new(w);
        // A result's files are the guest's: a link in them is archived as a link, never
        // followed out of the directory.
        t.follow_symlinks(false);
        t.mode(tar::HeaderMode::Deterministic);
        let r = t
            .append_dir_all(".", &dir)
            .and_then(|()| t.into_inner())
            .and_then(|mut w| std::io::Write::flush(&mut w));
        if let Err(e) = r {
            tracing::debug!("archive of {}: {e}", dir.display());
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.tar\""),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

const CHUNK: usize = 64 << 10;

/// Writes into a bounded channel, a chunk at a time; fails once the reader is gone.
struct Chunks {
    tx: tokio::sync::mpsc::Sender<std::io::Result<axum::body::Bytes>>,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk.into()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// One job: its state and, once it ran, its summary.
#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path, description = "the job's id")), responses((status = 200, body = JobView), (status = 404, body = ProblemBody)))]
async fn job(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<JobView>, Problem> {
    let b = ctx.backend.clone();
    Ok(Json(blocking(move || b.job(&id)).await?))
}

/// Cancels a queued or running job.
#[utoipa::path(delete, path = "/v1/jobs/{id}", params(("id" = String, Path, description = "the job's id")), responses((status = 200, body = JobView), (status = 403, body = ProblemBody), (status = 404, body = ProblemBody)))]
async fn cancel(
    State(ctx): State<Ctx>,
    Extension(token): Extension<Presented>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, Problem> {
    let b = ctx.backend.clone();
    Ok(Json(
        blocking(move || {
            token.allows(Operation::Cancel, &b.job(&id)?.name)?;
            b.cancel(&id)
        })
        .await?,
    ))
}

async fn task_file(ctx: Ctx, id: String, index: u64, file: String) -> Result<Response, Problem> {
    let b = ctx.backend.clone();
    let bytes = blocking(move || b.task_file(&id, index, &file)).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// A task's standard output, once its result is accepted.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks/{index}/stdout", params(("id" = String, Path), ("index" = u64, Path)), responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ProblemBody)))]
async fn task_stdout(
    State(ctx): State<Ctx>,
    Path((id, index)): Path<(String, u64)>,
) -> Result<Response, Problem> {
    task_file(ctx, id, index, "stdout".into()).await
}

/// A task's standard error, once its result is accepted.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks/{index}/stderr", params(("id" = String, Path), ("index" = u64, Path)), responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ProblemBody)))]
async fn task_stderr(
    State(ctx): State<Ctx>,
    Path((id, index)): Path<(String, u64)>,
) -> Result<Response, Problem> {
    task_file(ctx, id, index, "stderr".into()).await
}

/// A file the task left in `/out`.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks/{index}/out/{path}", params(("id" = String, Path), ("index" = u64, Path), ("path" = String, Path, description = "its path under /out")), responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 400, body = ProblemBody), (status = 404, body = ProblemBody)))]
async fn task_out(
    State(ctx): State<Ctx>,
    Path((id, index, path)): Path<(String, u64, String)>,
) -> Result<Response, Problem> {
    check_path(&path)?;
    task_file(ctx, id, index, format!("out/{path}")).await
}

/// Queues a job: a part `job` with the job file's TOML, and one part per file it names,
/// named by its path relative to the job file. `Idempotency-Key` makes a retry return the
/// same job.
#[utoipa::path(post, path = "/v1/jobs", request_body(content_type = "multipart/form-data", description = "the job file (part `job`) and its files"), params(("Idempotency-Key" = Option<String>, Header)), responses((status = 201, body = JobView), (status = 400, body = ProblemBody), (status = 413, body = ProblemBody), (status = 429, body = ProblemBody)))]
async fn submit(
    State(ctx): State<Ctx>,
    Extension(token): Extension<Presented>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Result<(StatusCode, Json<JobView>), Problem> {
    let mut upload = Upload {
        idempotency_key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ..Upload::default()
    };
    let mut job = None;
    let mut parts = 0;
    let too_big = |e| multipart_problem(e, ctx.max_upload);
    while let Some(field) = form.next_field().await.map_err(too_big)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(Problem::bad_request(format!(
                "more than {MAX_PARTS} parts in one submit"
            )));
        }
        let name = field
            .name()
            .map(str::to_owned)
            .ok_or_else(|| Problem::bad_request("a part has no name"))?;
        let bytes = field.bytes().await.map_err(too_big)?.to_vec();
        if name == "job" {
            job = Some(bytes);
        } else {
            check_path(&name)?;
            upload.files.push((name, bytes));
        }
    }
    upload.job = job.ok_or_else(|| {
        Problem::bad_request("no part named `job`: send the job file's TOML in it")
    })?;
    let b = ctx.backend.clone();
    let view =
        blocking(move || b.submit(upload, &|name| token.allows(Operation::Submit, name))).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

fn multipart_problem(e: axum::extract::multipart::MultipartError, max: usize) -> Problem {
    let status = e.status().as_u16();
    Problem::new(
        status,
        if status == 413 {
            "payload too large"
        } else {
            "bad request"
        },
        format!("{} (a submit holds at most {max} bytes)", e.body_text()),
    )
}

/// A file's part name: a relative path inside the job's directory.
pub fn check_path(name: &str) -> Result<(), Problem> {
    let p = std::path::Path::new(name);
    let ok = !name.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(Problem::bad_request(format!(
            "part {name:?}: a file's part is named by its path relative to the job file, inside its directory"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_stay_inside_the_job_directory() {
        for ok in ["pi.wasm", "in/a.txt", "a/b/c.bin"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for no in ["", "/etc/passwd", "../x", "a/../../b", "./a"] {
            assert!(check_path(no).is_err(), "{no}");
        }
    }

    #[test]
    fn the_openapi_document_names_every_route() {
        let doc = openapi();
        let v = serde_json::to_value(&doc).expect("json");
        assert_eq!(v["openapi"], "3.1.0");
        let paths = v["paths"].as_object().expect("paths");
        for (path, method) in [
            ("/v1/node", "get"),
            ("/v1/jobs", "get"),
            ("/v1/jobs", "post"),
            ("/v1/jobs/{id}", "get"),
            ("/v1/jobs/{id}", "delete"),
            ("/v1/jobs/{id}/tasks/{index}/stdout", "get"),
            ("/v1/jobs/{id}/tasks/{index}/stderr", "get"),
            ("/v1/jobs/{id}/tasks/{index}/out/{path}", "get"),
            ("/v1/jobs/{id}/events", "get"),
            ("/v1/jobs/{id}/archive", "get"),
        ] {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path}"
            );
        }
        assert_eq!(
            paths.len(),
            8,
            "a route the test does not know: {:?}",
            paths.keys()
        );
        assert!(v["components"]["securitySchemes"]["bearer"].is_object());
    }
}
