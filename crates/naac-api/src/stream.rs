//! What streams out of a job: its changes as Server-Sent Events, its results as a tar.

use crate::{Backend, Ctx, JobView, Problem, ProblemBody, blocking, metrics::Open};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The least time between two events of one stream: a job that changes a thousand times a
/// second is read at most twenty times a second per watcher.
pub(crate) const EVENT_GAP: std::time::Duration = std::time::Duration::from_millis(50);

/// A job's changes as Server-Sent Events, each the job as `GET /v1/jobs/{id}` shows it:
/// `state` when its state changes (the first event is one), `progress` while it runs
/// (tasks accepted, failed, running; providers). The stream ends after the job does.
/// A client that reads slowly misses intermediate progress, never the final state, and
/// holds nothing on the node.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", params(("id" = String, Path)), responses((status = 200, content_type = "text/event-stream", body = String), (status = 404, body = ProblemBody)))]
pub(crate) async fn events(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
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
        _open: Open,
    }
    let w = Watch {
        b,
        id,
        rx,
        last: None,
        pending: Some(first),
        at: tokio::time::Instant::now(),
        _open: Open::new(&ctx.streams),
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
pub(crate) fn ended(v: &JobView) -> bool {
    match v.state.as_str() {
        "done" | "failed" => true,
        "cancelled" => v.started_ms.is_none() || v.summary.is_some() || v.error.is_some(),
        _ => false,
    }
}

/// A job's results directory as a tar (the layout of `naac run`'s results), streamed:
/// the node holds a few chunks of it at a time, whatever its size.
#[utoipa::path(get, path = "/v1/jobs/{id}/archive", params(("id" = String, Path)), responses((status = 200, content_type = "application/x-tar", body = Vec<u8>), (status = 404, body = ProblemBody)))]
pub(crate) async fn archive(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
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

pub(crate) const CHUNK: usize = 64 << 10;

/// Writes into a bounded channel, a chunk at a time; fails once the reader is gone.
pub(crate) struct Chunks {
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
