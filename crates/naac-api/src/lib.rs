//! The node's HTTP API (the only crate that knows HTTP): routes under `/v1` over a
//! [`Backend`] the node implements (its job queue), bearer-token authentication, RFC 9457
//! problem details for every error, and the [`client`] the CLI talks to it with.
//!
//! Routes: `GET /v1/node`; `POST /v1/jobs` (`multipart/form-data`: a part `job` with the
//! job file's TOML, one part per file it references, named by its path relative to the job
//! file; an `Idempotency-Key` header makes a retried submit return the same job); `GET
//! /v1/jobs`; `GET /v1/jobs/{id}`; `DELETE /v1/jobs/{id}` (cancel); `GET
//! /v1/jobs/{id}/tasks/{index}/stdout`, `…/stderr` and `…/out/{path}` (a task's output).

pub mod client;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where the API listens unless told otherwise: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";
/// Largest submit (the job file and every file it names).
pub const MAX_UPLOAD_BYTES: usize = 256 << 20;
/// Most parts in one submit.
const MAX_PARTS: usize = 4096;

/// One job as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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
    pub summary: Option<serde_json::Value>,
}

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

#[derive(Serialize)]
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
    /// Queues a job; `400` for a job that cannot run (naming the file, line and field).
    fn submit(&self, upload: Upload) -> Result<JobView, Problem>;
    /// Every job, newest first.
    fn jobs(&self) -> Result<Vec<JobView>, Problem>;
    fn job(&self, id: &str) -> Result<JobView, Problem>;
    /// Cancels a queued or running job (a finished one is left as it is).
    fn cancel(&self, id: &str) -> Result<JobView, Problem>;
    /// A file of task `index`'s accepted result: `stdout`, `stderr` or `out/PATH` (`PATH`
    /// already checked to stay inside the task's directory).
    fn task_file(&self, id: &str, index: u64, file: &str) -> Result<Vec<u8>, Problem>;
    /// The node: identity, roles, addresses.
    fn node(&self) -> serde_json::Value;
}

#[derive(Clone)]
struct Ctx {
    backend: Arc<dyn Backend>,
    token: Arc<str>,
    max_upload: usize,
}

/// The API's routes over `backend`, every one behind `token`; a submit holds at most
/// `max_upload` bytes.
pub fn router(backend: Arc<dyn Backend>, token: &str, max_upload: usize) -> Router {
    let ctx = Ctx {
        backend,
        token: token.into(),
        max_upload,
    };
    Router::new()
        .route("/v1/node", get(node))
        .route("/v1/jobs", get(jobs).post(submit))
        .route("/v1/jobs/{id}", get(job).delete(cancel))
        .route("/v1/jobs/{id}/tasks/{index}/stdout", get(task_stdout))
        .route("/v1/jobs/{id}/tasks/{index}/stderr", get(task_stderr))
        .route("/v1/jobs/{id}/tasks/{index}/out/{*path}", get(task_out))
        .layer(DefaultBodyLimit::max(max_upload))
        .layer(middleware::from_fn_with_state(ctx.clone(), authorize))
        .with_state(ctx)
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

/// Lets a request through with the right bearer token; a state-changing one only from no
/// browser origin or this server's own (so a page elsewhere cannot submit through a
/// logged-in browser).
async fn authorize(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return Problem::new(
            401,
            "unauthorized",
            "send the node's API token as `Authorization: Bearer TOKEN` (the CLI reads it from api.token in the node's data dir)",
        )
        .into_response();
    };
    if !same(given.as_bytes(), ctx.token.as_bytes()) {
        return Problem::new(401, "unauthorized", "the API token is not this node's")
            .into_response();
    }
    if !req.method().is_safe() && !same_origin(req.headers()) {
        return Problem::new(
            403,
            "forbidden",
            "a state-changing request from another origin is refused",
        )
        .into_response();
    }
    next.run(req).await
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

async fn node(State(ctx): State<Ctx>) -> Result<Json<serde_json::Value>, Problem> {
    let b = ctx.backend.clone();
    Ok(Json(blocking(move || Ok(b.node())).await?))
}

async fn jobs(State(ctx): State<Ctx>) -> Result<Json<Vec<JobView>>, Problem> {
    let b = ctx.backend.clone();
    Ok(Json(blocking(move || b.jobs()).await?))
}

async fn job(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<JobView>, Problem> {
    let b = ctx.backend.clone();
    Ok(Json(blocking(move || b.job(&id)).await?))
}

async fn cancel(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<JobView>, Problem> {
    let b = ctx.backend.clone();
    Ok(Json(blocking(move || b.cancel(&id)).await?))
}

async fn task_file(ctx: Ctx, id: String, index: u64, file: String) -> Result<Response, Problem> {
    let b = ctx.backend.clone();
    let bytes = blocking(move || b.task_file(&id, index, &file)).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn task_stdout(
    State(ctx): State<Ctx>,
    Path((id, index)): Path<(String, u64)>,
) -> Result<Response, Problem> {
    task_file(ctx, id, index, "stdout".into()).await
}

async fn task_stderr(
    State(ctx): State<Ctx>,
    Path((id, index)): Path<(String, u64)>,
) -> Result<Response, Problem> {
    task_file(ctx, id, index, "stderr".into()).await
}

async fn task_out(
    State(ctx): State<Ctx>,
    Path((id, index, path)): Path<(String, u64, String)>,
) -> Result<Response, Problem> {
    check_path(&path)?;
    task_file(ctx, id, index, format!("out/{path}")).await
}

async fn submit(
    State(ctx): State<Ctx>,
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
    let view = blocking(move || b.submit(upload)).await?;
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
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
