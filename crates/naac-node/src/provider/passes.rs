//! Pool tokens shown by requesters: checked in the `Hello` against the roots the owner trusts
//! (`trust_tokens_from`), again for each `Assign` under its own job name, and the grant's
//! slot limit kept here: every token of one grant (one authority block, however handed on)
//! shares one count of tasks running at once on this node.

use crate::revoked::Revoked;
use naac_net::PeerId;
use naac_proto::Pass;
use naac_token::{Key, PoolRequest, Token, Verifier};
use naac_types::policy::Policy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

/// How long an `Assign`'s verdict on a token is reused for more `Assign`s of the same job.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Most grants tracked at once (those no task holds are dropped first).
pub const MAX_GRANTS: usize = 1024;

const REVOKED: &str = "your token was revoked";

/// A peer that said Hello: the user it proved it works for, and the token it showed.
#[derive(Default)]
pub struct Greeted {
    pub user: Option<String>,
    /// The token it showed: verified, or why not.
    pub pass: Option<Result<Shown, String>>,
}

/// A token that verified against a trusted root.
pub struct Shown {
    token: Arc<Token>,
    /// Its blocks' revocation ids.
    ids: Vec<Vec<u8>>,
    user_key: Option<Key>,
    /// The job the Hello said it runs under the token.
    job_name: String,
    grant: Arc<Grant>,
    /// The last `Assign`'s verdict: its job name, when, and the slots allowed or why none.
    last: Option<(String, Instant, Result<u32, String>)>,
}

/// The verifier for `policy`'s trusted roots (`None`: it trusts none).
pub fn verifier(policy: &Policy) -> Option<Verifier> {
    let keys: Vec<Key> = policy
        .trust_tokens_from
        .iter()
        .filter_map(|id| naac_net::ed25519_of(&id.parse::<PeerId>().ok()?))
        .collect();
    if keys.is_empty() {
        return None;
    }
    Verifier::trusting(&keys).ok()
}

/// Checks the token of a `Hello` from a requester working for `user`: `Ok(None)` when it
/// shows none or the owner trusts no root (it then counts for nothing), `Err(why)` when it
/// does not verify.
pub fn shown(
    policy: Option<&Policy>,
    pass: Option<&Pass>,
    user: Option<&str>,
    (grants, revoked): (&mut Grants, &Revoked),
) -> Result<Option<Shown>, String> {
    let (Some(pass), Some(v)) = (pass, policy.and_then(verifier)) else {
        return Ok(None);
    };
    let token = v
        .verify(&pass.token)
        .map_err(|e| format!("your token: {e}"))?;
    let ids = token.revocation_ids();
    if revoked.any(&ids) {
        return Err(REVOKED.into());
    }
    let user_key = user
        .and_then(|u| u.parse::<PeerId>().ok())
        .and_then(|p| naac_net::ed25519_of(&p));
    // A full map would give each session a grant of its own, and so its own slots.
    let grant = grants
        .of(ids.first().cloned().unwrap_or_default())
        .ok_or("this host tracks too many grants now; try again later")?;
    Ok(Some(Shown {
        token: Arc::new(token),
        ids,
        user_key,
        job_name: pass.job_name.chars().take(256).collect(),
        grant,
        last: None,
    }))
}

impl Shown {
    fn request<'a>(&'a self, host: &'a str, job_name: &'a str, policy: &Policy) -> PoolRequest<'a> {
        let now = SystemTime::now();
        PoolRequest {
            host,
            user: self.user_key.as_ref(),
            job_name,
            slots: 1,
            minute_of_day: policy.minute_of_day(now),
            now,
        }
    }

    /// Whether the token lets its holder in now, for the job its Hello named (status and
    /// `--explain`).
    pub fn admits(&self, host: &str, policy: &Policy, revoked: &Revoked) -> Result<(), String> {
        if revoked.any(&self.ids) {
            return Err(REVOKED.into());
        }
        self.token
            .authorize_pool(&self.request(host, &self.job_name, policy))
            .map_err(|e| e.to_string())
    }

    /// The most tasks of the grant the token lets run at once here (at most `slots`) for an
    /// `Assign` of `job_name`, or why none; reused for [`RECHECK`].
    pub fn for_assign(
        &mut self,
        host: &str,
        job_name: &str,
        policy: &Policy,
        slots: u32,
        revoked: &Revoked,
    ) -> Result<u32, String> {
        if revoked.any(&self.ids) {
            return Err(REVOKED.into());
        }
        if let Some((name, at, verdict)) = &self.last
            && name == job_name
            && at.elapsed() < RECHECK
        {
            return verdict.clone();
        }
        let verdict = self
            .token
            .pool_slots(&self.request(host, job_name, policy), slots)
            .map_err(|e| e.to_string());
        self.last = Some((job_name.to_string(), Instant::now(), verdict.clone()));
        verdict
    }

    pub fn grant(&self) -> Arc<Grant> {
        self.grant.clone()
    }

    /// Forgets the last verdict (a revocation came in); whether this token is now revoked.
    pub fn recheck(&mut self, revoked: &Revoked) -> bool {
        self.last = None;
        revoked.any(&self.ids)
    }
}

/// A grant, and the most of its tasks a token lets run here at once.
pub type Gate = (Arc<Grant>, u32);

/// The grants seen, by the revocation id of their authority block.
#[derive(Default)]
pub struct Grants {
    map: HashMap<Vec<u8>, Weak<Grant>>,
}

impl Grants {
    /// The grant `id`, shared with every session that shows a token of it; `None` when
    /// [`MAX_GRANTS`] are in use.
    fn of(&mut self, id: Vec<u8>) -> Option<Arc<Grant>> {
        if let Some(g) = self.map.get(&id).and_then(Weak::upgrade) {
            return Some(g);
        }
        if self.map.len() >= MAX_GRANTS {
            self.map.retain(|_, g| g.strong_count() > 0);
        }
        if self.map.len() >= MAX_GRANTS {
            return None;
        }
        let g = Arc::new(Grant::default());
        self.map.insert(id, Arc::downgrade(&g));
        Some(g)
    }
}

/// The tasks of one grant running here.
#[derive(Default)]
pub struct Grant {
    running: Mutex<u32>,
    freed: tokio::sync::Notify,
}

/// A place among a grant's running tasks, given back when dropped.
pub struct GrantSlot(Arc<Grant>);

impl Drop for GrantSlot {
    fn drop(&mut self) {
        let mut n = self.0.running.lock().expect("grant lock");
        *n = n.saturating_sub(1);
        drop(n);
        self.0.freed.notify_waiters();
    }
}

impl Grant {
    /// Waits until fewer than `cap` of the grant's tasks run, then takes a place; gives up
    /// (`None`) once `cancel` is set.
    pub async fn enter(self: &Arc<Self>, cap: u32, cancel: &AtomicBool) -> Option<GrantSlot> {
        loop {
            let freed = self.freed.notified();
            {
                let mut n = self.running.lock().expect("grant lock");
                if *n < cap.max(1) {
                    *n += 1;
                    return Some(GrantSlot(self.clone()));
                }
            }
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            // Wake on a freed place, or now and then to see a cancel.
            let _ = tokio::time::timeout(Duration::from_millis(250), freed).await;
        }
    }

    pub fn running(&self) -> u32 {
        *self.running.lock().expect("grant lock")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_grant_runs_at_most_its_cap_and_frees_places() {
        let g = Arc::new(Grant::default());
        let cancel = AtomicBool::new(false);
        let a = g.enter(2, &cancel).await.unwrap();
        let _b = g.enter(2, &cancel).await.unwrap();
        assert_eq!(g.running(), 2);
        // A third waits until one leaves.
        let g2 = g.clone();
        let third = tokio::spawn(async move {
            let c = AtomicBool::new(false);
            g2.enter(2, &c).await.map(|_| ())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished());
        drop(a);
        third.await.unwrap().unwrap();
        // A cancelled wait gives up.
        cancel.store(true, Ordering::Relaxed);
        assert!(g.enter(1, &cancel).await.is_none());
    }

    #[test]
    fn grants_are_shared_by_id_and_bounded() {
        let mut gs = Grants::default();
        let a = gs.of(vec![1]).unwrap();
        assert!(Arc::ptr_eq(&a, &gs.of(vec![1]).unwrap()));
        let held: Vec<_> = (0..MAX_GRANTS as u32 - 1)
            .map(|i| gs.of(i.to_le_bytes().to_vec()).unwrap())
            .collect();
        // Full: a new grant is refused (not given an unshared count), a known one is shared.
        assert!(gs.of(vec![9, 9, 9]).is_none());
        assert!(Arc::ptr_eq(&a, &gs.of(vec![1]).unwrap()));
        drop(held);
        assert!(gs.of(vec![9, 9, 9]).is_some(), "freed places are reused");
        assert!(gs.map.len() <= MAX_GRANTS);
    }
}
