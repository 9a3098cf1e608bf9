//! The task protocol's framing: a 4-byte big-endian length, then one CBOR message.
//!
//! A length prefix lets the reader refuse an oversized frame before reading it. Each kind of
//! message has its own limit ([`naac_proto::request_limit`], [`naac_proto::response_limit`]):
//! a frame over the small-message limit is read only as far as its kind (the body's variant
//! name, within the first few bytes of the CBOR) and refused there unless that kind may be
//! large, so a `Hello` declaring 512 MiB costs its reader 64 bytes. A frame that may be large
//! is read into a buffer that grows with what has arrived (doubling, so it is filled without
//! re-zeroing), never allocated whole from the length a peer declared.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use naac_proto::{MAX_MESSAGE_BYTES, MAX_SMALL_MESSAGE_BYTES, Request, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;

#[derive(Clone, Default)]
pub struct TaskCodec;

/// Bytes read first from a frame over the small-message limit, to learn its kind.
const HEAD_BYTES: usize = 64;
/// The first step of a large frame's buffer; it doubles as bytes arrive.
const FIRST_CHUNK: usize = 1 << 20;

/// The most bytes a message of a kind may take (by its body's variant name).
type LimitOf = fn(&str) -> u64;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The body's variant name from the first bytes of a message as naac encodes it: a map of
/// two entries, `"v"` (an unsigned version) then `"body"`, whose value is either a map of one
/// entry keyed by the variant's name or, for a variant without data, the name itself.
/// Anything else (another layout, a truncated head) is `None`, and gets the small limit.
pub(crate) fn kind_of(head: &[u8]) -> Option<&str> {
    let rest = head.strip_prefix(&[0xa2, 0x61, b'v'])?;
    let rest = match *rest.first()? {
        0x00..=0x17 => &rest[1..],
        0x18 => rest.get(2..)?,
        0x19 => rest.get(3..)?,
        _ => return None,
    };
    let rest = rest.strip_prefix(&[0x64, b'b', b'o', b'd', b'y'])?;
    let rest = rest.strip_prefix(&[0xa1]).unwrap_or(rest);
    let (len, rest) = match *rest.first()? {
        b @ 0x60..=0x77 => (usize::from(b - 0x60), &rest[1..]),
        0x78 => (usize::from(*rest.get(1)?), &rest[2..]),
        _ => return None,
    };
    let name = std::str::from_utf8(rest.get(..len)?).ok()?;
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric())
        .then_some(name)
}

/// The limit of the message whose encoding starts with `head`, and its kind for errors.
fn limit_for(head: &[u8], limit_of: LimitOf) -> (u64, &str) {
    match kind_of(head) {
        Some(kind) => (limit_of(kind).min(MAX_MESSAGE_BYTES), kind),
        None => (MAX_SMALL_MESSAGE_BYTES, "message of unknown kind"),
    }
}

async fn read_frame<T, M>(io: &mut T, limit_of: LimitOf) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: DeserializeOwned,
{
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u64::from(u32::from_be_bytes(len));
    if len > MAX_MESSAGE_BYTES {
        return Err(invalid(format!(
            "frame of {len} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"
        )));
    }
    let len = len as usize;
    let buf = if len as u64 <= MAX_SMALL_MESSAGE_BYTES {
        let mut buf = vec![0u8; len];
        io.read_exact(&mut buf).await?;
        buf
    } else {
        let mut buf = vec![0u8; HEAD_BYTES];
        io.read_exact(&mut buf).await?;
        let (limit, kind) = limit_for(&buf, limit_of);
        if len as u64 > limit {
            return Err(invalid(format!(
                "frame of {len} bytes for a {kind} is over its {limit}-byte limit"
            )));
        }
        // Grow with what arrives: a peer that declares much and sends little holds little.
        while buf.len() < len {
            let start = buf.len();
            let step = (len - start).min(start.max(FIRST_CHUNK));
            buf.resize(start + step, 0);
            io.read_exact(&mut buf[start..]).await?;
        }
        buf
    };
    cbor4ii::serde::from_slice(&buf).map_err(|e| invalid(format!("malformed message: {e}")))
}

async fn write_frame<T, M>(io: &mut T, msg: &M, limit_of: LimitOf) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
    M: Serialize,
{
    let mut buf = vec![0u8; 4];
    buf = cbor4ii::serde::to_vec(buf, msg)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("encode message: {e}")))?;
    let len = buf.len() as u64 - 4;
    // The reader's rule: only a frame over the small limit is judged by its kind.
    let (limit, kind) = limit_for(&buf[4..], limit_of);
    if len > MAX_SMALL_MESSAGE_BYTES && len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{kind} of {len} bytes is over its {limit}-byte limit"),
        ));
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    io.write_all(&buf).await?;
    io.flush().await
}

impl request_response::Codec for TaskCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, naac_proto::request_limit).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, naac_proto::response_limit).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, naac_proto::request_limit).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &resp, naac_proto::response_limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use naac_proto::{BankRequest, RequestBody, ResponseBody, request_limit, response_limit};
    use naac_types::{ContentId, JobId};

    fn encode<M: Serialize>(msg: &M, limit_of: LimitOf) -> io::Result<Vec<u8>> {
        futures::executor::block_on(async {
            let mut b = Vec::new();
            write_frame(&mut b, msg, limit_of).await.map(|()| b)
        })
    }

    fn decode<M: DeserializeOwned>(bytes: &mut &[u8], limit_of: LimitOf) -> io::Result<M> {
        futures::executor::block_on(read_frame(bytes, limit_of))
    }

    fn job() -> JobId {
        JobId::derive(&ContentId::of(b"codec"), b"1")
    }

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let resp = Response::new(ResponseBody::Blob(vec![7; 100_000]));
        let buf = encode(&resp, response_limit).expect("write");
        assert!(
            buf.len() < 100_100,
            "bytes are encoded compactly: {}",
            buf.len()
        );
        let back: Response = decode(&mut &buf[..], response_limit).expect("read");
        assert!(matches!(back.body, ResponseBody::Blob(b) if b.len() == 100_000));

        let mut huge = (u32::MAX).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(decode::<Request>(&mut &huge[..], request_limit).is_err());
        let mut junk = 8u32.to_be_bytes().to_vec();
        junk.extend_from_slice(&[0xff; 8]);
        assert!(decode::<Request>(&mut &junk[..], request_limit).is_err());
        assert!(decode::<Request>(&mut &[0u8, 0][..], request_limit).is_err());
        let ok = encode(
            &Request::new(RequestBody::Hello(Default::default())),
            request_limit,
        )
        .expect("write");
        assert!(
            decode::<Request>(&mut &ok[..ok.len() - 1], request_limit).is_err(),
            "truncated"
        );
    }

    /// The kind is read from the bytes cbor4ii really writes, for every variant.
    #[test]
    fn every_kind_is_named_by_its_first_bytes() {
        let requests = [
            (RequestBody::Hello(Default::default()), "Hello"),
            (RequestBody::Status(Default::default()), "Status"),
            (
                RequestBody::Cancel {
                    job: job(),
                    tasks: vec![(1, 2)],
                },
                "Cancel",
            ),
            (
                RequestBody::Fetch {
                    id: ContentId::of(b"x"),
                },
                "Fetch",
            ),
            (
                RequestBody::Checkpoint {
                    job: job(),
                    index: 1,
                    attempt: 0,
                    data: vec![1; 10],
                },
                "Checkpoint",
            ),
            (RequestBody::Bank(BankRequest::Info), "Bank"),
            (
                RequestBody::Report(naac_proto::Report {
                    job: job(),
                    results: Vec::new(),
                    held: vec![(0, 0)],
                    seen_seq: 1,
                    returned: Vec::new(),
                }),
                "Report",
            ),
            (
                RequestBody::Assign(naac_proto::Assign {
                    job: job(),
                    seq: 1,
                    module: ContentId::of(b"m"),
                    argv0: "a".into(),
                    limits: Default::default(),
                    checkpoint_interval_ms: None,
                    order: None,
                    sources: Vec::new(),
                    hold_over: None,
                    holders: Vec::new(),
                    inline: Vec::new(),
                    reply_with_results: false,
                    tasks: Vec::new(),
                }),
                "Assign",
            ),
        ];
        for (body, name) in requests {
            let b = encode(&Request::new(body), request_limit).expect("write");
            assert_eq!(kind_of(&b[4..]), Some(name));
        }
        let responses = [
            (ResponseBody::Ack, "Ack"),
            (ResponseBody::NotFound, "NotFound"),
            (ResponseBody::Refused("no".into()), "Refused"),
            (ResponseBody::Blob(vec![1; 3]), "Blob"),
            (
                ResponseBody::Welcome(Box::new(naac_proto::Welcome {
                    slots: 1,
                    agent: "naac".into(),
                    owner: None,
                    status: Default::default(),
                    bid: None,
                    addrs: Vec::new(),
                })),
                "Welcome",
            ),
        ];
        for (body, name) in responses {
            let b = encode(&Response::new(body), response_limit).expect("write");
            assert_eq!(kind_of(&b[4..]), Some(name));
        }
        assert_eq!(kind_of(&[0xa2, 0x61, b'v']), None, "a truncated head");
        assert_eq!(kind_of(&[0xff; 64]), None);
    }

    /// A `Hello` frame declaring 100 MiB: refused after its first 64 bytes, whatever follows.
    #[test]
    fn a_small_kind_declaring_a_large_frame_is_refused_from_its_head() {
        let hello = encode(
            &Request::new(RequestBody::Hello(Default::default())),
            request_limit,
        )
        .expect("write");
        let mut frame = (100u32 << 20).to_be_bytes().to_vec();
        frame.extend_from_slice(&hello[4..]);
        frame.resize(4 + 4096, 0);
        let mut rest = &frame[..];
        let e = decode::<Request>(&mut rest, request_limit).expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string()
                .contains("for a Hello is over its 65536-byte limit"),
            "{e}"
        );
        assert_eq!(frame.len() - rest.len(), 4 + HEAD_BYTES, "read no further");

        // The same for a layout naac does not write.
        let mut odd = (1u32 << 20).to_be_bytes().to_vec();
        odd.resize(4 + (1 << 20), 0xa1);
        let e = decode::<Request>(&mut &odd[..], request_limit).expect_err("refused");
        assert!(e.to_string().contains("unknown kind"), "{e}");
    }

    /// The writer keeps the reader's rules: an honest peer never sends what will be refused.
    #[test]
    fn the_writer_refuses_a_kind_over_its_limit() {
        let hello = naac_proto::Hello {
            pass: None,
            user: Some(naac_proto::UserAttestation {
                user: "u".into(),
                signature: vec![0; 100_000],
            }),
            solicit: None,
        };
        let e =
            encode(&Request::new(RequestBody::Hello(hello)), request_limit).expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("Hello of"), "{e}");
        let refused = Response::new(ResponseBody::Refused("x".repeat(70_000)));
        assert!(encode(&refused, response_limit).is_err());
    }

    /// Large kinds still pass, read through the growing buffer.
    #[test]
    fn large_kinds_round_trip() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let req = Request::new(RequestBody::Checkpoint {
            job: job(),
            index: 7,
            attempt: 1,
            data: data.clone(),
        });
        let b = encode(&req, request_limit).expect("write");
        let back: Request = decode(&mut &b[..], request_limit).expect("read");
        assert!(matches!(back.body, RequestBody::Checkpoint { data: d, .. } if d == data));
        let too_big = Request::new(RequestBody::Checkpoint {
            job: job(),
            index: 7,
            attempt: 1,
            data: vec![0; 65 << 20],
        });
        assert!(encode(&too_big, request_limit).is_err());
    }
}
