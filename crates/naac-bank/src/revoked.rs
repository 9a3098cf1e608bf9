//! Revoked spend tokens at the bank: the node hands the bank the ids of revocations it
//! checked (`naac-node`'s `revoked.rs`), and the bank refuses escrows opened or topped up with
//! a token that holds one of those blocks, before the ledger sees the request. Revocation is
//! the bank's, not a rule of the replayed ledger: entries accepted before it stay valid.

use crate::BankHandle;
use naac_ledger::{Request, SignedRequest};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// Revoked spend tokens' block ids, shared by the handle and the bank's thread.
pub(crate) type Revoked = Arc<RwLock<HashSet<Vec<u8>>>>;

/// Most revoked ids a bank keeps.
pub const MAX_REVOKED: usize = 65_536;

impl BankHandle {
    /// From now on the bank refuses escrows opened or topped up with a spend token that
    /// holds the block whose revocation id is `id` (the caller checked the revocation). At
    /// most [`MAX_REVOKED`] are kept; past it, none is added.
    pub fn revoke(&self, id: Vec<u8>) {
        if let Ok(mut set) = self.revoked.write()
            && set.len() < MAX_REVOKED
        {
            set.insert(id);
        }
    }
}

/// Why `r` is refused before the ledger sees it: it escrows with a revoked spend token.
pub(crate) fn refused(revoked: &Revoked, r: &SignedRequest) -> Option<String> {
    let set = revoked.read().ok()?;
    if set.is_empty() {
        return None;
    }
    let (_, req) = Request::from_msg(&r.msg).ok()?;
    let (Request::OpenEscrow { spend: Some(t), .. } | Request::TopUp { spend: Some(t), .. }) = &req
    else {
        return None;
    };
    let ids = naac_token::revocation_ids(t).ok()?;
    ids.iter()
        .any(|id| set.contains(id))
        .then(|| "spend token: the token was revoked".to_string())
}
