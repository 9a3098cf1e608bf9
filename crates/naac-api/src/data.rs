//! Stored data through its owner's node. `GET /v1/store/{id}/{path}` reads one file of
//! stored data; `PUT /v1/store?path=PATH` stores the body as file `path` in the node's user's
//! name (private: served to the user and holders of their data tokens) and answers its
//! `naac://` id. Neither takes the node's API token: each takes a data token (`naac token
//! mint data`) rooted in the node's *user* key, checked with the exact file path (storage
//! hosts can only check paths stripe by stripe).
//!
//! A bound token's holder proves itself per request with the header `Naac-Holder: KEY SECS
//! SIG` — its ed25519 key (hex), the Unix time, and its signature (hex) over
//! [`holder_signing_bytes`] of the method, the path (`/v1/store/ID/PATH`, or
//! `/v1/store?path=PATH` unencoded for a write), the time and the body's SHA-256 — within
//! [`HOLDER_SKEW`] of the node's clock, so a captured request cannot be replayed for long or
//! with another body.

use crate::{Ctx, Problem, auth};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use naac_token::{DataOp, DataRequest, Key};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far a holder's clock may be from the node's.
pub const HOLDER_SKEW: Duration = Duration::from_secs(300);

/// The header a holder proves itself with.
pub const HOLDER_HEADER: &str = "naac-holder";

/// Holder signatures seen lately: a captured request is not replayed within
/// [`HOLDER_SKEW`] (at most [`MAX_SEEN`] kept; beyond, the oldest go).
#[derive(Default)]
pub(crate) struct Seen(std::sync::Mutex<std::collections::VecDeque<(u64, String)>>);

/// Holder signatures remembered.
pub const MAX_SEEN: usize = 16_384;

impl Seen {
    /// Whether `header` is new (and remembers it).
    fn first_time(&self, header: &str) -> bool {
        let now = unix(SystemTime::now());
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while q
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > 2 * HOLDER_SKEW.as_secs())
            || q.len() >= MAX_SEEN
        {
            q.pop_front();
        }
        if q.iter().any(|(_, s)| s == header) {
            return false;
        }
        q.push_back((now, header.to_string()));
        true
    }
}

/// Largest file stored in one `PUT`.
pub const MAX_PUT: usize = 64 << 20;

/// What a holder signs for one request (SHA-256 of the body, which any client's standard
/// library has).
pub fn holder_signing_bytes(method: &str, path: &str, secs: u64, body: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let mut b = b"naac data request v1\0".to_vec();
    b.extend_from_slice(method.as_bytes());
    b.push(b' ');
    b.extend_from_slice(path.as_bytes());
    b.push(0);
    b.extend_from_slice(&secs.to_le_bytes());
    b.extend_from_slice(&sha2::Sha256::digest(body));
    b
}

/// The `Naac-Holder` header value for a request signed by `key` with `sign`.
pub fn holder_header(
    key: &Key,
    method: &str,
    path: &str,
    body: &[u8],
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
) -> String {
    let secs = unix(SystemTime::now());
    let sig = sign(&holder_signing_bytes(method, path, secs, body));
    format!("{} {secs} {}", hex(key), hex(&sig))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The key a request's `Naac-Holder` header proves, if it proves one.
fn holder(h: &HeaderMap, method: &Method, path: &str, body: &[u8]) -> Result<Option<Key>, Problem> {
    let Some(v) = h.get(HOLDER_HEADER) else {
        return Ok(None);
    };
    let bad = |why: &str| Problem::new(401, "unauthorized", format!("{HOLDER_HEADER}: {why}"));
    let v = v.to_str().map_err(|_| bad("not text"))?;
    let mut parts = v.split_ascii_whitespace();
    let (Some(k), Some(t), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected KEY SECS SIG"));
    };
    let key: Key = unhex(k)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("KEY is not 64 hex digits"))?;
    let secs: u64 = t.parse().map_err(|_| bad("SECS is not a Unix time"))?;
    let sig = unhex(s).ok_or_else(|| bad("SIG is not hex"))?;
    let now = unix(SystemTime::now());
    if now.abs_diff(secs) > HOLDER_SKEW.as_secs() {
        return Err(bad(
            "the signed time is more than 5 minutes from this node's clock",
        ));
    }
    let msg = holder_signing_bytes(method.as_str(), path, secs, body);
    if !naac_types::sig::verify(&key, &msg, &sig) {
        return Err(bad("the signature does not match this request"));
    }
    Ok(Some(key))
}

/// The data token a request carries, verified against the node's user key, and checked for
/// `op` on `manifest` (`""` for a write) at `path`.
fn check(
    ctx: &Ctx,
    h: &HeaderMap,
    method: &Method,
    uri_path: &str,
    body: &[u8],
    (op, manifest, path): (DataOp, &str, &str),
) -> Result<(), Problem> {
    let Some(verifier) = &ctx.data else {
        return Err(Problem::not_found("this node serves no stored data"));
    };
    let Some(given) = auth::presented(h) else {
        return Err(Problem::new(
            401,
            "unauthorized",
            "send a data token of this node's user as `Authorization: Bearer TOKEN` (`naac token mint data`)",
        ));
    };
    let token = verifier.verify(given).map_err(auth::denied)?;
    if token.holder().is_none() {
        return Err(Problem::new(
            403,
            "forbidden",
            "this data token names no holder; mint it with --to USER",
        ));
    }
    let by = holder(h, method, uri_path, body)?;
    if let Some(v) = h.get(HOLDER_HEADER).and_then(|v| v.to_str().ok())
        && !ctx.seen.first_time(v)
    {
        return Err(Problem::new(
            401,
            "unauthorized",
            format!("{HOLDER_HEADER}: this signature was used already; sign each request anew"),
        ));
    }
    token
        .authorize_data(&DataRequest {
            by: by.as_ref(),
            op,
            manifest,
            path: Some(path),
            now: SystemTime::now(),
        })
        .map_err(auth::denied)
}

/// One file of stored data (the node's user's, or public), for a holder of the user's data
/// token that allows reading it.
#[utoipa::path(get, path = "/v1/store/{id}/{path}", params(("id" = String, Path, description = "the stored data's id, 64 hex"), ("path" = String, Path, description = "the file inside it"), ("Naac-Holder" = Option<String>, Header, description = "KEY SECS SIG: the token's holder, proven for this request")), security(("data_token" = [])), responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 401, body = crate::ProblemBody), (status = 403, body = crate::ProblemBody), (status = 404, body = crate::ProblemBody)))]
pub(crate) async fn read(
    State(ctx): State<Ctx>,
    Path((id, path)): Path<(String, String)>,
    h: HeaderMap,
) -> Result<Response, Problem> {
    let id = id.strip_prefix("naac:").unwrap_or(&id).to_ascii_lowercase();
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Problem::bad_request(format!(
            "{id:?} is not a stored-data id (64 hex digits)"
        )));
    }
    crate::check_path(&path)?;
    let uri = format!("/v1/store/{id}/{path}");
    check(
        &ctx,
        &h,
        &Method::GET,
        &uri,
        &[],
        (DataOp::Read, &id, &path),
    )?;
    let bytes = ctx.backend.data_read(id, path).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}

/// Where a `PUT` stores its body.
#[derive(serde::Deserialize)]
pub(crate) struct WriteAt {
    path: String,
}

/// Stores the body as file `path`, private, in the node's user's name, for a holder of the
/// user's data token that allows writing it; answers `{"id": "naac://…", "path": …}`.
#[utoipa::path(put, path = "/v1/store", params(("path" = String, Query, description = "the file's path inside the stored tree"), ("Naac-Holder" = Option<String>, Header, description = "KEY SECS SIG: the token's holder, proven for this request")), request_body(content_type = "application/octet-stream", description = "the file's bytes"), security(("data_token" = [])), responses((status = 201, body = serde_json::Value), (status = 401, body = crate::ProblemBody), (status = 403, body = crate::ProblemBody), (status = 413, body = crate::ProblemBody)))]
pub(crate) async fn write(
    State(ctx): State<Ctx>,
    axum::extract::Query(WriteAt { path }): axum::extract::Query<WriteAt>,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    crate::check_path(&path)?;
    if body.len() > MAX_PUT {
        return Err(Problem::new(
            413,
            "payload too large",
            format!("a stored file is at most {MAX_PUT} bytes through the API"),
        ));
    }
    let signed = format!("/v1/store?path={path}");
    check(
        &ctx,
        &h,
        &Method::PUT,
        &signed,
        &body,
        (DataOp::Write, "", &path),
    )?;
    let v = ctx.backend.data_write(path, body.to_vec()).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(v)).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_header_proves_its_key_for_this_request_only() {
        let secret = [5u8; 32];
        let sk = ed25519_dalek::SigningKey::from_bytes(&secret);
        let key = sk.verifying_key().to_bytes();
        let sign = |m: &[u8]| {
            use ed25519_dalek::Signer as _;
            sk.sign(m).to_bytes().to_vec()
        };
        let header = holder_header(&key, "GET", "/v1/store/ab/x", b"", &sign);
        let mut h = HeaderMap::new();
        h.insert(HOLDER_HEADER, header.parse().unwrap());
        assert_eq!(
            holder(&h, &Method::GET, "/v1/store/ab/x", b"").unwrap(),
            Some(key)
        );
        // Another path, method or body: refused.
        assert!(holder(&h, &Method::GET, "/v1/store/ab/y", b"").is_err());
        assert!(holder(&h, &Method::PUT, "/v1/store/ab/x", b"").is_err());
        assert!(holder(&h, &Method::GET, "/v1/store/ab/x", b"x").is_err());
        // An old signature.
        let old = unix(SystemTime::now()) - 3600;
        let sig = sign(&holder_signing_bytes("GET", "/p", old, b""));
        let mut h = HeaderMap::new();
        h.insert(
            HOLDER_HEADER,
            format!("{} {old} {}", hex(&key), hex(&sig))
                .parse()
                .unwrap(),
        );
        assert!(holder(&h, &Method::GET, "/p", b"").is_err());
        // A signature is good once: a replay is refused, a fresh one is not.
        let seen = Seen::default();
        let once = holder_header(&key, "PUT", "/v1/store?path=a", b"x", &sign);
        assert!(seen.first_time(&once));
        assert!(!seen.first_time(&once));
        assert!(seen.first_time(&holder_header(&key, "PUT", "/v1/store?path=b", b"x", &sign)));
        // Garbage.
        for g in ["", "a b", "zz 1 00", &format!("{} x 00", hex(&key))] {
            let mut h = HeaderMap::new();
            h.insert(HOLDER_HEADER, g.parse().unwrap());
            assert!(holder(&h, &Method::GET, "/p", b"").is_err(), "{g:?}");
        }
    }
}
