//! Who may call what: the token a request carries (bearer or the dashboard's cookie),
//! checked against the node's key and the operation the route is.

use crate::{Ctx, Problem};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use naac_token::Operation;
use std::sync::Arc;

/// The name of the cookie the dashboard's login sets (the same token as the bearer).
pub const COOKIE: &str = "naac_token";

/// The token a request carries: `Authorization: Bearer TOKEN`, else the login cookie.
pub(crate) fn presented(h: &HeaderMap) -> Option<&str> {
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
pub(crate) fn operation(req: &Request) -> Option<Operation> {
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
pub(crate) struct Presented(Arc<naac_token::Token>);

impl Presented {
    pub(crate) fn allows(&self, op: Operation, job_name: &str) -> Result<(), Problem> {
        self.0
            .authorize(op, Some(job_name), std::time::SystemTime::now())
            .map_err(denied)
    }
}

pub(crate) fn denied(e: naac_token::TokenError) -> Problem {
    match e {
        naac_token::TokenError::Invalid(m) => Problem::new(401, "unauthorized", m),
        naac_token::TokenError::Denied(m) => Problem::new(403, "forbidden", m),
    }
}

/// Lets a request through with a token of this node whose checks allow it (`401` without
/// a valid token, `403` out of its scope); a state-changing one only from no browser
/// origin or this server's own (so a page elsewhere cannot act through a logged-in
/// browser).
pub(crate) async fn authorize(State(ctx): State<Ctx>, mut req: Request, next: Next) -> Response {
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

pub(crate) fn same_origin(h: &HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin == format!("http://{host}")
}
