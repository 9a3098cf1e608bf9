//! The node's HTTP API (the only crate that knows HTTP): routes under `/v1` over a
//! [`Backend`] the node implements (its job queue), bearer-token authentication, RFC 9457
//! problem details for every error, and the [`client`] the CLI talks to it with.
//!
//! Routes: `GET /v1/node`; `POST /v1/jobs` (`multipart/form-data`: a part `job` with the
//! job file's TOML, one part per file it references, named by its path relative to the job
//! file; an `Idempotency-Key` header makes a retried submit return the same job, a
//! `Naac-Pool-Token` header gives the job a pool token its runs show providers); `GET
//! /v1/jobs`; `GET /v1/jobs/{id}`; `DELETE /v1/jobs/{id}` (cancel); `GET
//! /v1/jobs/{id}/tasks/{index}/stdout`, `…/stderr` and `…/out/{path}` (a task's output);
//! `GET /v1/jobs/{id}/events` (Server-Sent Events); `GET /v1/jobs/{id}/archive` (a tar);
//! `GET /v1/pool`, `GET /v1/market`, `GET /v1/wallet`, `GET`/`PUT /v1/policy`.

mod auth;
pub mod client;
mod dashboard;
pub mod data;
mod metrics;
mod stream;

pub use auth::COOKIE;
use auth::{Presented, authorize, same_origin};
use metrics::*;
use stream::*;

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use naac_token::Operation;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
    /// The field of the input at fault, when one is (a policy key).
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: u16, title: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            detail: detail.into(),
            retry_after: None,
            field: None,
        }
    }

    pub fn with_field(mut self, field: Option<String>) -> Self {
        self.field = field;
        self
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
    /// The field of the input at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: "about:blank",
            title: &self.title,
            status: self.status,
            detail: &self.detail,
            field: self.field.as_deref(),
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
    /// A pool token the job's runs show providers (header `Naac-Pool-Token`).
    pub pool_token: Option<String>,
}

/// One figure of `GET /metrics`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Its name; a counter's gets `_total` appended.
    pub name: &'static str,
    pub help: &'static str,
    pub counter: bool,
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

/// Bytes the node gathers from the network.
pub type PendingBytes =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, Problem>> + Send>>;

/// An answer the node gathers from the network.
pub type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<serde_json::Value, Problem>> + Send>>;

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
    /// A file of task `index`'s accepted result (or, for `None`, of the job's reduce step):
    /// `stdout`, `stderr` or `out/PATH` (`PATH` already checked to stay inside the task's
    /// directory).
    fn task_file(&self, id: &str, index: Option<u64>, file: &str) -> Result<Vec<u8>, Problem>;
    /// Tasks `from..from + limit` of job `id`: each one's `index`, `state` (`accepted`,
    /// `failed` or `open`), its accepted result's record (attempt, provider, fuel, wall
    /// time, verification, price) once the job's index is written, and its `/out` files.
    fn tasks(&self, id: &str, from: u64, limit: u64) -> Result<serde_json::Value, Problem>;
    /// The node: identity, roles, addresses.
    fn node(&self) -> serde_json::Value;
    /// Job `id`'s results directory (`404` before it has one).
    fn results_dir(&self, id: &str) -> Result<std::path::PathBuf, Problem>;
    /// Every host in view (`naac pool --json`).
    fn pool(&self) -> Pending;
    /// The live offers (`naac market --json`).
    fn market(&self) -> Pending;
    /// The user's account: balance and recent history; with `verify`, the ledger checked
    /// as `naac wallet verify` checks it.
    fn wallet(&self, verify: bool) -> Pending;
    /// The owner's policy (`naac policy show --json`).
    fn policy(&self) -> Result<serde_json::Value, Problem>;
    /// Sets policy keys, each as `naac policy set KEY VALUE` would, all or none; the
    /// policy as it now is.
    fn set_policy(&self, changes: Vec<(String, String)>) -> Result<serde_json::Value, Problem>;
    /// The node's figures for `GET /metrics` (the API adds its own).
    fn metrics(&self) -> Result<Vec<Sample>, Problem>;
    /// Ticks whenever a job changes (queued, started, progressed, ended): what the event
    /// streams wait on.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// File `path` of stored data `id` (64 hex), read for the node's user (`GET
    /// /v1/store/…`, after its data token was checked).
    fn data_read(&self, id: String, path: String) -> PendingBytes {
        let _ = (id, path);
        Box::pin(async { Err(Problem::not_found("this node serves no stored data")) })
    }
    /// Stores `bytes` as file `path`, private, in the node's user's name (`PUT
    /// /v1/store/…`); answers its id.
    fn data_write(&self, path: String, bytes: Vec<u8>) -> Pending {
        let _ = (path, bytes);
        Box::pin(async { Err(Problem::not_found("this node serves no stored data")) })
    }
}

#[derive(Clone)]
struct Ctx {
    backend: Arc<dyn Backend>,
    verifier: naac_token::Verifier,
    /// Data tokens' root: the node's user key (`None`: no `/v1/store` routes).
    data: Option<naac_token::Verifier>,
    /// Holder signatures seen lately (`/v1/store` refuses a replay).
    seen: Arc<data::Seen>,
    max_upload: usize,
    /// Answers by status class (`2xx`, `4xx`, …).
    answers: Family<Vec<(String, String)>, Counter>,
    /// Event streams open now.
    streams: Gauge,
}

/// The API's routes over `backend`, every one behind a token `verifier` accepts — but
/// `/v1/store`'s, behind a data token `data` accepts ([`data`]); a submit holds at most
/// `max_upload` bytes.
pub fn router(
    backend: Arc<dyn Backend>,
    verifier: naac_token::Verifier,
    data: Option<naac_token::Verifier>,
    max_upload: usize,
) -> Router {
    let ctx = Ctx {
        backend,
        verifier,
        data,
        seen: Arc::default(),
        max_upload,
        answers: Family::default(),
        streams: Gauge::default(),
    };
    let (routes, doc) = documented();
    routes
        // A wildcard path: documented as `{path}`, routed as axum's `{*path}`.
        .route("/v1/jobs/{id}/tasks/{index}/out/{*path}", get(task_out))
        .route("/v1/openapi.json", get(move || async move { Json(doc) }))
        .layer(DefaultBodyLimit::max(max_upload))
        .layer(middleware::from_fn_with_state(ctx.clone(), authorize))
        .merge(dashboard::router())
        .route("/v1/store/{id}/{*path}", get(data::read))
        .route(
            "/v1/store",
            axum::routing::put(data::write).layer(DefaultBodyLimit::max(data::MAX_PUT + 1)),
        )
        .layer(middleware::from_fn_with_state(ctx.clone(), count))
        .layer(middleware::map_response(nosniff))
        .with_state(ctx)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "naac node API", version = "1", description = "Jobs handed to a naac node: submit, follow, cancel, fetch results; the user's stored data for holders of their data tokens. Every route needs `Authorization: Bearer TOKEN`: the node's `api.token` (or a token made from it), and on `/v1/store` a data token of the node's user (`naac token mint data`)."),
    paths(task_out, data::read, data::write),
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
        c.add_security_scheme(
            "data_token",
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
        .routes(routes!(reduce_file))
        .routes(routes!(events))
        .routes(routes!(tasks))
        .routes(routes!(archive))
        .routes(routes!(pool))
        .routes(routes!(market))
        .routes(routes!(wallet))
        .routes(routes!(policy, set_policy))
        .routes(routes!(metrics))
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

/// No answer is ever taken for another type than it says (a guest's output file served as
/// `application/octet-stream` stays a download, never a page).
async fn nosniff(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Runs a backend call off the event loop.
pub(crate) async fn blocking<T: Send + 'static>(
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

/// Every host in view: its resources, state, price, latency and what this node learned of
/// it, and the totals. Gathered by listening a few seconds; kept ten.
#[utoipa::path(get, path = "/v1/pool", responses((status = 200, body = Object), (status = 401, body = ProblemBody)))]
async fn pool(State(ctx): State<Ctx>) -> Result<Json<serde_json::Value>, Problem> {
    Ok(Json(ctx.backend.pool().await?))
}

/// The live offers: each provider's asking price and free slots.
#[utoipa::path(get, path = "/v1/market", responses((status = 200, body = Object), (status = 401, body = ProblemBody)))]
async fn market(State(ctx): State<Ctx>) -> Result<Json<serde_json::Value>, Problem> {
    Ok(Json(ctx.backend.market().await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WalletQuery {
    /// Also check the bank's whole ledger (as `naac wallet verify`).
    verify: Option<bool>,
}

/// The user's account: `balance`, `history` (newest first) and, with `?verify=true`,
/// `verify` (the ledger checked end to end).
#[utoipa::path(get, path = "/v1/wallet", params(WalletQuery), responses((status = 200, body = Object), (status = 401, body = ProblemBody), (status = 502, body = ProblemBody)))]
async fn wallet(
    State(ctx): State<Ctx>,
    axum::extract::Query(q): axum::extract::Query<WalletQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    Ok(Json(ctx.backend.wallet(q.verify.unwrap_or(false)).await?))
}

/// The owner's policy, every key with its value (defaults included), and its file.
#[utoipa::path(get, path = "/v1/policy", responses((status = 200, body = Object), (status = 401, body = ProblemBody), (status = 409, body = ProblemBody)))]
async fn policy(State(ctx): State<Ctx>) -> Result<Json<serde_json::Value>, Problem> {
    let b = ctx.backend.clone();
    Ok(Json(blocking(move || b.policy()).await?))
}

/// Sets policy keys (`{"max_cpu": "50%", …}`, each value as `naac policy set` takes it),
/// all or none, keeping the file's comments; `400` names the key at fault (`field`). Needs
/// an admin token.
#[utoipa::path(put, path = "/v1/policy", request_body(content = Object, description = "keys and their new values, as text"), responses((status = 200, body = Object), (status = 400, body = ProblemBody), (status = 403, body = ProblemBody)))]
async fn set_policy(
    State(ctx): State<Ctx>,
    Json(changes): Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<serde_json::Value>, Problem> {
    let mut kv = Vec::with_capacity(changes.len());
    for (k, v) in changes {
        let text = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => {
                return Err(Problem::bad_request(format!(
                    "{k}: give the value as text, as `naac policy set {k} VALUE` takes it (got {other})"
                ))
                .with_field(Some(k)));
            }
        };
        kv.push((k, text));
    }
    let b = ctx.backend.clone();
    Ok(Json(blocking(move || b.set_policy(kv)).await?))
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TasksQuery {
    /// The first task's index (default 0).
    from: Option<u64>,
    /// Tasks in the answer (default 100, at most 1000).
    limit: Option<u64>,
}

/// A job's tasks, a range at a time: each one's state, where its accepted result ran, its
/// fuel and verification, and the files it left in `/out`.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks", params(("id" = String, Path), TasksQuery), responses((status = 200, body = Object), (status = 404, body = ProblemBody)))]
async fn tasks(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<TasksQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let (from, limit) = (q.from.unwrap_or(0), q.limit.unwrap_or(100).clamp(1, 1000));
    let b = ctx.backend.clone();
    Ok(Json(blocking(move || b.tasks(&id, from, limit)).await?))
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

async fn task_file(
    ctx: Ctx,
    id: String,
    index: Option<u64>,
    file: String,
) -> Result<Response, Problem> {
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
    task_file(ctx, id, Some(index), "stdout".into()).await
}

/// A task's standard error, once its result is accepted.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks/{index}/stderr", params(("id" = String, Path), ("index" = u64, Path)), responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ProblemBody)))]
async fn task_stderr(
    State(ctx): State<Ctx>,
    Path((id, index)): Path<(String, u64)>,
) -> Result<Response, Problem> {
    task_file(ctx, id, Some(index), "stderr".into()).await
}

/// A file the task left in `/out`.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks/{index}/out/{path}", params(("id" = String, Path), ("index" = u64, Path), ("path" = String, Path, description = "its path under /out")), responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 400, body = ProblemBody), (status = 404, body = ProblemBody)))]
async fn task_out(
    State(ctx): State<Ctx>,
    Path((id, index, path)): Path<(String, u64, String)>,
) -> Result<Response, Problem> {
    check_path(&path)?;
    task_file(ctx, id, Some(index), format!("out/{path}")).await
}

/// The reduce step's `stdout` or `stderr` (the job's combined answer), once it ran.
#[utoipa::path(get, path = "/v1/jobs/{id}/reduce/{file}", params(("id" = String, Path), ("file" = String, Path, description = "`stdout` or `stderr`")), responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ProblemBody)))]
async fn reduce_file(
    State(ctx): State<Ctx>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, Problem> {
    if file != "stdout" && file != "stderr" {
        return Err(Problem::not_found(format!(
            "the reduce step has stdout and stderr, not {file:?}"
        )));
    }
    task_file(ctx, id, None, file).await
}

/// Queues a job: a part `job` with the job file's TOML, and one part per file it names,
/// named by its path relative to the job file. `Idempotency-Key` makes a retry return the
/// same job.
#[utoipa::path(post, path = "/v1/jobs", request_body(content_type = "multipart/form-data", description = "the job file (part `job`) and its files"), params(("Idempotency-Key" = Option<String>, Header), ("Naac-Pool-Token" = Option<String>, Header, description = "a pool token (`naac token mint pool`) the job's runs show providers")), responses((status = 201, body = JobView), (status = 400, body = ProblemBody), (status = 413, body = ProblemBody), (status = 429, body = ProblemBody)))]
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
        pool_token: headers
            .get("naac-pool-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ..Upload::default()
    };
    if upload
        .pool_token
        .as_ref()
        .is_some_and(|t| t.len() > naac_token::MAX_TOKEN_LEN)
    {
        return Err(Problem::bad_request(format!(
            "the pool token is longer than {} bytes",
            naac_token::MAX_TOKEN_LEN
        )));
    }
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
            ("/v1/store/{id}/{path}", "get"),
            ("/v1/store", "put"),
            ("/v1/jobs/{id}/events", "get"),
            ("/v1/jobs/{id}/archive", "get"),
            ("/v1/pool", "get"),
            ("/v1/market", "get"),
            ("/v1/wallet", "get"),
            ("/v1/policy", "get"),
            ("/v1/policy", "put"),
            ("/metrics", "get"),
            ("/v1/jobs/{id}/tasks", "get"),
            ("/v1/jobs/{id}/reduce/{file}", "get"),
        ] {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path}"
            );
        }
        assert_eq!(
            paths.len(),
            17,
            "a route the test does not know: {:?}",
            paths.keys()
        );
        assert!(v["components"]["securitySchemes"]["bearer"].is_object());
    }
}
