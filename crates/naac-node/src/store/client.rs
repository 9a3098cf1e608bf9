//! Talking to storage hosts: finding them, uploading a shard, reading verified slices and
//! manifests. Every answer is checked here (slices against the shard's root, manifests
//! against their id), so a host can waste a request but never hand over a wrong byte; the
//! error says which of offline, lost and corrupt the host was.

use naac_net::{Client, PeerId, RequestError};
use naac_proto::store::{
    DataPass, MAX_PUT_BYTES, MAX_READ_BYTES, StoreInfo, StoreRequest, StoreResponse,
};
use naac_proto::{Request, RequestBody, ResponseBody};
use naac_store::audit::Verdict;
use naac_store::{Manifest, SignedManifest, StoreId};
use naac_types::ContentId;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

/// How long one storage request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a host did not give what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    #[error("unreachable: {0}")]
    Offline(String),
    #[error("did not answer within {0:?}")]
    Late(Duration),
    #[error("does not hold it")]
    Lost,
    #[error("sent bytes that do not check out: {0}")]
    Corrupt(String),
    #[error("refused: {0}")]
    Refused(String),
    /// Its owner paused it (and lets it answer nothing, or not this, while paused).
    #[error("{0}")]
    Paused(String),
}

impl HostError {
    /// What this failure means for the host's audit record.
    pub fn verdict(&self) -> Verdict {
        match self {
            HostError::Offline(_) => Verdict::Offline,
            HostError::Late(_) => Verdict::Late,
            HostError::Lost => Verdict::Lost,
            HostError::Corrupt(_) => Verdict::Corrupt,
            // A host that refuses to serve what it took is as good as having lost it.
            HostError::Refused(_) => Verdict::Lost,
            // Its owner has it for now: a miss, like being away.
            HostError::Paused(_) => Verdict::Offline,
        }
    }
}

/// One storage request with a deadline.
pub async fn call(
    client: &Client,
    peer: PeerId,
    req: StoreRequest,
    timeout: Duration,
) -> Result<StoreResponse, HostError> {
    let fut = client.request(peer, Request::new(RequestBody::Store(req)));
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(HostError::Late(timeout)),
        Ok(Err(RequestError::Timeout(_))) => Err(HostError::Late(timeout)),
        Ok(Err(e)) => Err(HostError::Offline(e.to_string())),
        Ok(Ok(r)) => match r.body {
            ResponseBody::Store(s) => Ok(s),
            ResponseBody::NotFound => Err(HostError::Lost),
            ResponseBody::Refused(why) if why.starts_with(naac_proto::store::PAUSED) => {
                Err(HostError::Paused(why))
            }
            ResponseBody::Refused(why) => Err(HostError::Refused(why)),
            other => Err(HostError::Corrupt(format!(
                "answered a storage request with {}",
                kind(&other)
            ))),
        },
    }
}

fn kind(b: &ResponseBody) -> &'static str {
    match b {
        ResponseBody::Welcome(_) => "Welcome",
        ResponseBody::Ack => "Ack",
        ResponseBody::Blob(_) => "Blob",
        ResponseBody::NotFound => "NotFound",
        ResponseBody::Refused(_) => "Refused",
        ResponseBody::Bank(_) => "Bank",
        ResponseBody::Store(_) => "Store",
        ResponseBody::Report(_) => "Report",
    }
}

/// A host's offer.
pub async fn info(client: &Client, peer: PeerId) -> Result<StoreInfo, HostError> {
    match call(client, peer, StoreRequest::Info, Duration::from_secs(10)).await? {
        StoreResponse::Info(i) => Ok(i),
        _ => Err(HostError::Corrupt(
            "answered Info with something else".into(),
        )),
    }
}

/// What an upload offers its host: how long, at what price, paid from which escrow.
#[derive(Clone, Copy, Debug)]
pub struct Terms {
    pub days: u32,
    pub price: naac_types::Price,
    pub escrow: Option<naac_proto::store::StoreEscrow>,
}

/// Offers, uploads and seals shard `shard` (the file at `path`) on `peer`.
#[allow(clippy::too_many_arguments)]
pub async fn upload(
    client: &Client,
    peer: PeerId,
    m: StoreId,
    shard: u16,
    root: ContentId,
    path: &Path,
    terms: &Terms,
    signed: &[u8],
) -> Result<(), HostError> {
    let len = std::fs::metadata(path)
        .map_err(|e| HostError::Refused(format!("{}: {e}", path.display())))?
        .len();
    let offer = StoreRequest::Offer {
        manifest: m,
        shard,
        root,
        len,
        days: terms.days,
        price: terms.price,
        escrow: terms.escrow,
    };
    match call(client, peer, offer, REQUEST_TIMEOUT).await? {
        StoreResponse::Stored => return Ok(()),
        StoreResponse::Accepted => {}
        _ => return Err(HostError::Corrupt("answered an offer oddly".into())),
    }
    let mut file = std::fs::File::open(path)
        .map_err(|e| HostError::Refused(format!("{}: {e}", path.display())))?;
    let mut offset = 0u64;
    while offset < len {
        let n = (len - offset).min(MAX_PUT_BYTES) as usize;
        let mut data = vec![0u8; n];
        file.read_exact(&mut data)
            .map_err(|e| HostError::Refused(format!("{}: {e}", path.display())))?;
        let put = StoreRequest::Put {
            manifest: m,
            shard,
            offset,
            data,
        };
        let fut = client.request(peer, Request::new(RequestBody::Store(put)));
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Err(_) => return Err(HostError::Late(REQUEST_TIMEOUT)),
            Ok(Err(e)) => return Err(HostError::Offline(e.to_string())),
            Ok(Ok(r)) => match r.body {
                ResponseBody::Ack => {}
                ResponseBody::Refused(why) => return Err(HostError::Refused(why)),
                other => {
                    return Err(HostError::Corrupt(format!(
                        "answered a put with {}",
                        kind(&other)
                    )));
                }
            },
        }
        offset += n as u64;
    }
    let seal = StoreRequest::Seal {
        manifest: m,
        shard,
        signed: signed.to_vec(),
    };
    match call(client, peer, seal, REQUEST_TIMEOUT).await? {
        StoreResponse::Stored => Ok(()),
        _ => Err(HostError::Corrupt("answered a seal oddly".into())),
    }
}

/// Bytes `start..start + len` of shard `shard` of `man`, proven against its root.
#[allow(clippy::too_many_arguments)]
pub async fn read(
    client: &Client,
    peer: PeerId,
    m: &StoreId,
    man: &Manifest,
    shard: u16,
    start: u64,
    len: u64,
    timeout: Duration,
    pass: Option<&DataPass>,
) -> Result<Vec<u8>, HostError> {
    let root = man.shards[usize::from(shard)];
    let shard_len = man.geometry.shard_len();
    let mut out = Vec::with_capacity(len as usize);
    let mut at = start;
    let end = (start + len).min(shard_len);
    while at < end {
        let n = (end - at).min(MAX_READ_BYTES);
        let req = StoreRequest::Read {
            manifest: *m,
            shard,
            start: at,
            len: n,
            pass: pass.cloned(),
        };
        let slice = match call(client, peer, req, timeout).await? {
            StoreResponse::Slice(s) => s,
            _ => return Err(HostError::Corrupt("answered a read with no slice".into())),
        };
        let bytes = naac_store::verify::check(&slice, &root, at, n, shard_len)
            .map_err(|e| HostError::Corrupt(e.to_string()))?;
        out.extend_from_slice(&bytes);
        at += n;
    }
    Ok(out)
}

/// The manifest `m` from `peer`, checked against its id (`pass`: what a private one needs).
pub async fn manifest(
    client: &Client,
    peer: PeerId,
    m: &StoreId,
    pass: Option<&DataPass>,
) -> Result<(Manifest, Vec<u8>), HostError> {
    match call(
        client,
        peer,
        StoreRequest::Manifest {
            manifest: *m,
            pass: pass.cloned(),
        },
        REQUEST_TIMEOUT,
    )
    .await?
    {
        StoreResponse::Manifest(bytes) => SignedManifest::open(&bytes, m)
            .map(|man| (man, bytes))
            .map_err(|e| HostError::Corrupt(e.to_string())),
        _ => Err(HostError::Corrupt(
            "answered a manifest request oddly".into(),
        )),
    }
}

/// Which shards of `m` the host holds.
pub async fn holds(client: &Client, peer: PeerId, m: &StoreId) -> Result<Vec<u16>, HostError> {
    match call(
        client,
        peer,
        StoreRequest::Holds { manifest: *m },
        REQUEST_TIMEOUT,
    )
    .await?
    {
        StoreResponse::Holds(h) => Ok(h),
        _ => Err(HostError::Corrupt("answered a holds request oddly".into())),
    }
}

/// Storage hosts reachable from this node: the DHT's hosts record, each asked for its
/// offer (at most `max`, concurrently).
pub async fn find_hosts(
    client: &Client,
    within: Duration,
    max: usize,
) -> Vec<(PeerId, Vec<naac_net::Multiaddr>)> {
    let mut found = client
        .get_providers(super::HOSTS_KEY.to_vec(), within)
        .await
        .unwrap_or_default();
    found.truncate(max);
    found
}

/// Dials each found host and asks for its offer; hosts that do not answer come back with
/// the reason.
pub async fn survey(
    client: &Client,
    hosts: Vec<(PeerId, Vec<naac_net::Multiaddr>)>,
) -> Vec<(PeerId, Result<StoreInfo, HostError>)> {
    let asks = hosts.into_iter().map(|(peer, addrs)| async move {
        if !addrs.is_empty() {
            let _ = client.dial_peer(peer, addrs).await;
        }
        (peer, info(client, peer).await)
    });
    futures::future::join_all(asks).await
}
