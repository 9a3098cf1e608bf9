//! The task protocol's framing: a 4-byte big-endian length, then one CBOR message.
//!
//! A length prefix lets the reader refuse an oversized frame before reading it and read the
//! body into a buffer of exactly the right size (reading to end-of-stream instead re-zeroes
//! a growing buffer on every poll, which is quadratic for large results).

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use naac_proto::{MAX_MESSAGE_BYTES, Request, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;

#[derive(Clone, Default)]
pub struct TaskCodec;

async fn read_frame<T, M>(io: &mut T) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: DeserializeOwned,
{
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as u64;
    if len > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    io.read_exact(&mut buf).await?;
    cbor4ii::serde::from_slice(&buf).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed message: {e}"),
        )
    })
}

async fn write_frame<T, M>(io: &mut T, msg: &M) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
    M: Serialize,
{
    let mut buf = vec![0u8; 4];
    buf = cbor4ii::serde::to_vec(buf, msg)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("encode message: {e}")))?;
    let len = buf.len() as u64 - 4;
    if len > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {len} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"),
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
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
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
        write_frame(io, &req).await
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
        write_frame(io, &resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use naac_proto::{RequestBody, ResponseBody};

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        futures::executor::block_on(async {
            let mut buf = Vec::new();
            let resp = Response::new(ResponseBody::Blob(vec![7; 100_000]));
            write_frame(&mut buf, &resp).await.expect("write");
            assert!(
                buf.len() < 100_100,
                "bytes are encoded compactly: {}",
                buf.len()
            );
            let back: Response = read_frame(&mut &buf[..]).await.expect("read");
            assert!(matches!(back.body, ResponseBody::Blob(b) if b.len() == 100_000));

            let mut huge = (u32::MAX).to_be_bytes().to_vec();
            huge.extend_from_slice(&[0; 16]);
            assert!(read_frame::<_, Request>(&mut &huge[..]).await.is_err());
            let mut junk = 8u32.to_be_bytes().to_vec();
            junk.extend_from_slice(&[0xff; 8]);
            assert!(read_frame::<_, Request>(&mut &junk[..]).await.is_err());
            assert!(read_frame::<_, Request>(&mut &[0u8, 0][..]).await.is_err());
            let ok = {
                let mut b = Vec::new();
                write_frame(
                    &mut b,
                    &Request::new(RequestBody::Hello(Default::default())),
                )
                .await
                .expect("write");
                b
            };
            assert!(
                read_frame::<_, Request>(&mut &ok[..ok.len() - 1])
                    .await
                    .is_err(),
                "truncated"
            );
        });
    }
}
