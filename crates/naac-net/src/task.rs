//! The task protocol's side of the event loop: requests handed to the owner within each
//! peer's share of unanswered ones, responses and failures matched to their senders, and
//! malformed requests answered by hanging up.

use crate::{Event, EventLoop, RequestError, limits};
use libp2p::PeerId;
use libp2p::request_response::{self, ResponseChannel};
use naac_proto::{Request, Response, ResponseBody};
use tokio::sync::oneshot;

/// A request sent and waiting for its answer.
pub(crate) struct Pending {
    pub(crate) peer: PeerId,
    reply: oneshot::Sender<Result<Response, RequestError>>,
    /// A copy, kept while the peer is reached through a relay: a relayed connection closes
    /// once a direct one exists (or at the relay's limits), and a request it cut off goes
    /// again over the connection left.
    again: Option<Request>,
}

impl EventLoop {
    /// Sends `request` to `peer`; the answer goes to `reply`.
    pub(crate) fn send_request(
        &mut self,
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, RequestError>>,
    ) {
        let again = (!self.paths.relayed_of(peer).is_empty()).then(|| request.clone());
        let id = self.swarm.behaviour_mut().task.send_request(&peer, request);
        self.pending.insert(id, Pending { peer, reply, again });
    }

    /// Answers a request `Refused` without handing it on.
    pub(crate) fn refuse(&mut self, channel: ResponseChannel<Response>, why: &str) {
        let refusal = Response::new(ResponseBody::Refused(why.to_string()));
        let _ = self
            .swarm
            .behaviour_mut()
            .task
            .send_response(channel, refusal);
    }

    pub(crate) fn on_task(&mut self, ev: request_response::Event<Request, Response>) {
        use request_response::{Event as E, Message, OutboundFailure};
        match ev {
            E::Message {
                peer,
                connection_id,
                message:
                    Message::Request {
                        request,
                        channel,
                        request_id,
                    },
            } => {
                if !self.unanswered.admit(peer, request_id) {
                    tracing::debug!("refused a request from {peer}: too many unanswered");
                    let why = format!(
                        "{} requests from this peer are waiting for an answer; try again later",
                        limits::MAX_REQUESTS_PER_PEER
                    );
                    self.refuse(channel, &why);
                    return;
                }
                let relayed = self.paths.is_relayed(connection_id);
                self.emit(Event::Request {
                    peer,
                    request,
                    channel,
                    relayed,
                });
            }
            E::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(p) = self.pending.remove(&request_id) {
                    let _ = p.reply.send(Ok(response));
                }
            }
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let Some(p) = self.pending.remove(&request_id) else {
                    return;
                };
                let cut = matches!(
                    error,
                    OutboundFailure::ConnectionClosed | OutboundFailure::Io(_)
                );
                if cut
                    && self.swarm.is_connected(&peer)
                    && let Some(request) = p.again
                {
                    tracing::debug!("a request to {peer} was cut off: sending it again");
                    let id = self.swarm.behaviour_mut().task.send_request(&peer, request);
                    self.pending.insert(
                        id,
                        Pending {
                            peer,
                            reply: p.reply,
                            again: None,
                        },
                    );
                    return;
                }
                let e = match error {
                    OutboundFailure::DialFailure => RequestError::DialFailure(peer),
                    OutboundFailure::Timeout => RequestError::Timeout(peer),
                    OutboundFailure::ConnectionClosed => RequestError::ConnectionClosed(peer),
                    OutboundFailure::UnsupportedProtocols => RequestError::Unsupported(peer),
                    OutboundFailure::Io(e) => RequestError::Io {
                        peer,
                        message: e.to_string(),
                    },
                };
                let _ = p.reply.send(Err(e));
            }
            E::InboundFailure {
                peer,
                error,
                request_id,
                ..
            } => {
                self.unanswered.done(request_id);
                self.on_inbound_failure(peer, error);
            }
            E::ResponseSent { request_id, .. } => self.unanswered.done(request_id),
        }
    }

    fn on_inbound_failure(&mut self, peer: PeerId, error: request_response::InboundFailure) {
        use request_response::InboundFailure;
        match error {
            InboundFailure::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                // The codec refused the frame: the peer is broken or hostile, hang up.
                tracing::warn!("dropped a malformed request from {peer} and its connection: {e}");
                let _ = self.swarm.disconnect_peer_id(peer);
                self.emit(Event::BadFrame {
                    peer,
                    error: e.to_string(),
                });
            }
            other => tracing::debug!("inbound request from {peer} failed: {other}"),
        }
    }
}
