//! The session's side of the market: greeting bidders again for fresh asks before theirs
//! expire, and asking the bank which bidders have standing.

use super::session::{Internal, Session};
use naac_net::PeerId;
use naac_proto::{Request, RequestBody};
use std::time::Duration;

/// How long before a bidder's ask expires the run asks it for a fresh one.
const ASK_REFRESH: Duration = Duration::from_secs(15 * 60);

impl Session<'_> {
    /// Greets bidders whose ask expires within 15 minutes again, for a fresh one (the
    /// answer comes back as [`Internal::Reask`]).
    pub(super) fn refresh_asks(&mut self) {
        if !self.bidding.paid() {
            return;
        }
        for peer in self
            .bidding
            .expiring(crate::survey::unix_ms(), ASK_REFRESH.as_millis() as u64)
        {
            let (client, tx, hello) = (
                self.client.clone(),
                self.internal.clone(),
                self.hello.clone(),
            );
            tokio::spawn(async move {
                if let Ok(naac_proto::Response {
                    body: naac_proto::ResponseBody::Welcome(w),
                    ..
                }) = client
                    .request(peer, Request::new(RequestBody::Hello(hello)))
                    .await
                {
                    let _ = tx.send(Internal::Reask(peer, w)).await;
                }
            });
        }
    }

    /// Asks the bank whether a new bidder has standing; the answer comes back as
    /// [`Internal::Standing`]. Until it does, its ask sets no other provider's price.
    pub(super) fn ask_standing(&self, peer: PeerId) {
        let (Some(payer), Some(key)) = (self.payer.as_ref(), naac_net::ed25519_of(&peer)) else {
            return;
        };
        let bank = payer.escrow().bank.clone();
        let internal = self.internal.clone();
        let operator = self.operator.clone();
        tokio::spawn(async move {
            if let Some(op) = &operator
                && let Err(e) = crate::bank::register(&bank, op, naac_ledger::AccountKey(key)).await
                && !e.contains("already registered")
            {
                tracing::warn!("could not register {peer} at the pool's own bank: {e}");
            }
            let mut last = String::new();
            for attempt in 0..5u32 {
                match bank.standing(vec![naac_ledger::AccountKey(key)]).await {
                    Ok(v) => {
                        let standing = v.first().copied().unwrap_or(false);
                        let _ = internal.send(Internal::Standing(peer, standing)).await;
                        return;
                    }
                    Err(e) => last = e,
                }
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            tracing::warn!(
                "could not ask the bank about {peer}'s standing: {last}; its ask sets no other provider's price"
            );
        });
    }
}
