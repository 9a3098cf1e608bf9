//! `GET /metrics`: the node's figures and the API's own, in the Prometheus text format.

use crate::{Ctx, Problem, ProblemBody, Sample, blocking};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Counts every answer by its status class.
pub(crate) async fn count(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    let class = format!("{}xx", r.status().as_u16() / 100);
    ctx.answers
        .get_or_create(&vec![("class".to_string(), class)])
        .inc();
    r
}

/// The node's figures in the Prometheus text format. Needs a token like every route (a
/// `read` token is enough): point Prometheus at it with `authorization: {credentials: …}`.
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain; version=0.0.4", body = String), (status = 401, body = ProblemBody)))]
pub(crate) async fn metrics(State(ctx): State<Ctx>) -> Result<Response, Problem> {
    use prometheus_client::registry::Registry;
    let b = ctx.backend.clone();
    let samples = blocking(move || b.metrics()).await?;
    let mut reg = Registry::default();
    let mut names: Vec<&'static str> = samples.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let group: Vec<&Sample> = samples.iter().filter(|s| s.name == name).collect();
        let labels = |s: &Sample| -> Vec<(String, String)> {
            s.labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        if group.len() == 1 && group[0].labels.is_empty() {
            if group[0].counter {
                let c = Counter::<u64>::default();
                c.inc_by(group[0].value);
                reg.register(name, group[0].help, c);
            } else {
                let g = Gauge::<i64>::default();
                g.set(i64::try_from(group[0].value).unwrap_or(i64::MAX));
                reg.register(name, group[0].help, g);
            }
        } else if group[0].counter {
            let f = Family::<Vec<(String, String)>, Counter>::default();
            for s in &group {
                f.get_or_create(&labels(s)).inc_by(s.value);
            }
            reg.register(name, group[0].help, f);
        } else {
            let f = Family::<Vec<(String, String)>, Gauge>::default();
            for s in &group {
                f.get_or_create(&labels(s))
                    .set(i64::try_from(s.value).unwrap_or(i64::MAX));
            }
            reg.register(name, group[0].help, f);
        }
    }
    reg.register(
        "naac_api_answers",
        "API answers by status class",
        ctx.answers.clone(),
    );
    reg.register(
        "naac_api_event_streams",
        "event streams open now",
        ctx.streams.clone(),
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg)
        .map_err(|e| Problem::internal(format!("encode the metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Counts an event stream while it is open.
pub(crate) struct Open(Gauge);

impl Open {
    pub(crate) fn new(g: &Gauge) -> Open {
        g.inc();
        Open(g.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}
