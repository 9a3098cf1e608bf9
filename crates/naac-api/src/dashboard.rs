//! The dashboard: one page, its script and its style, embedded in the binary (no CDN; works
//! offline), served at `/` without a token (the page holds nothing; every figure it shows
//! comes from `/v1`, with the login cookie). `/?token=T` logs a browser in: the token is
//! checked, set as an HttpOnly, SameSite=Strict cookie, and the browser is sent on to `/`,
//! so the token leaves the address bar (and, with `Referrer-Policy: no-referrer`, is never
//! sent elsewhere).

use crate::{COOKIE, Ctx, same_origin};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

/// Scripts and styles from this server only; no frames; no inline code.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub(crate) fn router() -> Router<Ctx> {
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/logout", post(logout))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, kind)], body).into_response();
    secure(r.headers_mut());
    r
}

fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[derive(Deserialize)]
struct Login {
    token: Option<String>,
}

async fn index(State(ctx): State<Ctx>, Query(q): Query<Login>) -> Response {
    let Some(token) = q.token else {
        return asset("text/html; charset=utf-8", INDEX);
    };
    if let Err(e) = ctx.verifier.verify(&token) {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("this login address holds no token of this node: {e}\nrun `naac api url` on the node's machine for a fresh one\n"),
        )
            .into_response();
        secure(r.headers_mut());
        return r;
    }
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        token.trim()
    );
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    secure(r.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("naac_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}
