//! What a provider paid at a bank may claim: for each paid job, the payer's signed orders
//! for the runs it was given, and the signed records of the results it made for them. A
//! payer who closes its escrow without paying them (or abandons it) leaves them claimable
//! until the escrow's claim window ends; the node looks at the escrow now and then and, once
//! claims are open, sends a claim for every result it holds. The bank answers a result
//! already paid as a duplicate and refuses one the payer rejected. No IO: the node asks the
//! bank and reports back.

use naac_ledger::{Request, SignedOrder, SignedRecord};
use naac_proto::EscrowView;
use naac_types::JobId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most paid jobs remembered; the one touched longest ago goes first.
pub const MAX_JOBS: usize = 1024;
/// Most ordered runs remembered in all (work past it is refused, not left unclaimable).
pub const MAX_RUNS: usize = 1 << 20;
/// Most claims sent to the bank in one batch.
pub const MAX_BATCH: usize = 256;
/// How often a job's escrow is looked at while results are held for it.
pub const LOOK_EVERY: Duration = Duration::from_secs(2);

/// One order: the payer's signature, the runs of its tree in order, and the tree.
struct Order {
    signed: SignedOrder,
    runs: Vec<(u32, u32)>,
    tree: naac_ledger::MerkleTree,
}

#[derive(Default)]
struct Job {
    /// Run → its order and its index there.
    ordered: HashMap<(u32, u32), (Arc<Order>, u32)>,
    /// Results made for ordered runs, not yet claimed (or known paid).
    made: HashMap<(u32, u32), SignedRecord>,
    /// A look or a batch of claims is under way.
    busy: bool,
    looked: Option<Instant>,
    touched: Option<Instant>,
}

/// What to do about a job's escrow, as just seen.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Claims are not open yet (or nothing is held): look again later.
    Wait,
    /// Send these claims (the node signs them), for these runs.
    Claim(Vec<((u32, u32), Request)>),
    /// The escrow is gone or closed: nothing can be claimed any more.
    Forget,
}

#[derive(Default)]
pub struct Claims {
    jobs: HashMap<JobId, Job>,
    /// Ordered runs remembered, in all jobs.
    runs: usize,
}

impl Claims {
    /// The payer ordered `runs` (in the order's order) of `job` from this host. `Err` when
    /// this host already keeps claims for [`MAX_RUNS`] runs: the work is refused then.
    pub fn ordered(
        &mut self,
        job: JobId,
        signed: SignedOrder,
        runs: Vec<(u32, u32)>,
        now: Instant,
    ) -> Result<(), String> {
        if !self.jobs.contains_key(&job) && self.jobs.len() >= MAX_JOBS {
            // The job touched longest ago goes, unless it still has results to claim.
            let oldest = self
                .jobs
                .iter()
                .filter(|(_, j)| j.made.is_empty())
                .min_by_key(|(_, j)| j.touched)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => self.forget(&id),
                None => return Err("this host holds claims for too many paid jobs".into()),
            }
        }
        if self.runs + runs.len() > MAX_RUNS {
            return Err(format!(
                "this host holds claims for {} runs already; at most {MAX_RUNS}",
                self.runs
            ));
        }
        self.runs += runs.len();
        let j = self.jobs.entry(job).or_default();
        j.touched = Some(now);
        let tree = naac_ledger::order_tree(&runs);
        let order = Arc::new(Order { signed, runs, tree });
        for (i, run) in order.runs.iter().enumerate() {
            j.ordered.insert(*run, (order.clone(), i as u32));
        }
        Ok(())
    }

    fn forget(&mut self, job: &JobId) {
        if let Some(j) = self.jobs.remove(job) {
            self.runs = self.runs.saturating_sub(j.ordered.len());
        }
    }

    /// Whether a result of `run` would be claimable (the run was ordered).
    pub fn wants(&self, job: &JobId, run: (u32, u32)) -> bool {
        self.jobs
            .get(job)
            .is_some_and(|j| j.ordered.contains_key(&run))
    }

    /// This host made (and signed) the result of an ordered run.
    pub fn made(&mut self, job: &JobId, run: (u32, u32), record: SignedRecord) {
        if let Some(j) = self.jobs.get_mut(job)
            && j.ordered.contains_key(&run)
            && j.made.len() < MAX_RUNS
        {
            j.made.insert(run, record);
        }
    }

    /// Jobs whose escrow to look at now: results are held, nothing is under way, and the
    /// last look is older than [`LOOK_EVERY`]. Marks them busy.
    pub fn due(&mut self, now: Instant) -> Vec<JobId> {
        let mut out = Vec::new();
        for (id, j) in &mut self.jobs {
            let stale = j.looked.is_none_or(|t| now.duration_since(t) >= LOOK_EVERY);
            if !j.made.is_empty() && !j.busy && stale {
                j.busy = true;
                j.looked = Some(now);
                out.push(*id);
            }
        }
        out
    }

    /// The bank showed `job`'s escrow (`None`: it has none) at `now_ms` (Unix ms).
    pub fn looked(&mut self, job: JobId, view: Option<&EscrowView>, now_ms: u64) -> Step {
        let Some(j) = self.jobs.get_mut(&job) else {
            return Step::Forget;
        };
        let Some(v) = view.filter(|v| !v.closed && v.claim_window_ms > 0) else {
            self.forget(&job);
            return Step::Forget;
        };
        let open = v.closing || now_ms >= v.expires_ms.saturating_sub(v.claim_window_ms);
        if !open || j.made.is_empty() {
            j.busy = false;
            return Step::Wait;
        }
        let claims = j
            .made
            .iter()
            .take(MAX_BATCH)
            .filter_map(|(run, record)| {
                let (order, index) = j.ordered.get(run)?;
                let proof = order
                    .tree
                    .inclusion_proof(u64::from(*index), order.runs.len() as u64)?;
                Some((
                    *run,
                    Request::Claim {
                        job,
                        order: order.signed.clone(),
                        record: record.clone(),
                        index: *index,
                        proof,
                    },
                ))
            })
            .collect();
        Step::Claim(claims)
    }

    /// Claims of `job` were sent: `done` are settled for good (paid, or refused for a
    /// reason a later try would not pass); the others are sent again.
    pub fn answered(&mut self, job: JobId, done: &[(u32, u32)]) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        j.busy = false;
        for run in done {
            j.made.remove(run);
        }
    }

    /// The look at `job`'s escrow failed: try again later.
    pub fn look_failed(&mut self, job: JobId) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.busy = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use naac_proto::AccountKey;
    use naac_types::{ContentId, Credits, Price};

    fn job() -> JobId {
        JobId::derive(&ContentId::of(b"claims"), b"1")
    }

    fn view(closing: bool, expires_ms: u64) -> EscrowView {
        EscrowView {
            payer: AccountKey([1; 32]),
            controller: None,
            left: Credits(10),
            max_price: Price(1),
            fuel_limit: 1,
            closed: false,
            expires_ms,
            claim_window_ms: 1_000,
            closing,
            reserved_for: Credits(10),
        }
    }

    fn record(n: u8) -> SignedRecord {
        SignedRecord {
            bytes: vec![n; 8],
            sig: vec![n; 64],
        }
    }

    #[test]
    fn results_of_ordered_runs_are_claimed_once_claims_open() {
        let mut c = Claims::default();
        let t = Instant::now();
        let order = SignedOrder {
            bytes: vec![9],
            sig: vec![9],
        };
        c.ordered(job(), order, vec![(0, 0), (1, 0), (2, 0)], t)
            .expect("room");
        assert!(c.wants(&job(), (1, 0)));
        assert!(
            !c.wants(&job(), (1, 1)),
            "another attempt was not ordered here"
        );
        assert!(c.due(t).is_empty(), "nothing made yet");
        c.made(&job(), (1, 0), record(1));
        c.made(&job(), (7, 0), record(7));
        assert_eq!(c.due(t), vec![job()]);
        assert!(c.due(t).is_empty(), "one look at a time");
        // Open and far from expiry: wait.
        assert_eq!(c.looked(job(), Some(&view(false, 100_000)), 10), Step::Wait);
        assert!(c.due(t).is_empty(), "looked just now");
        let later = t + LOOK_EVERY;
        assert_eq!(c.due(later), vec![job()]);
        // Closing: claim the one result made for an ordered run, with its proof.
        let Step::Claim(claims) = c.looked(job(), Some(&view(true, 100_000)), 10) else {
            panic!("claims");
        };
        assert_eq!(claims.len(), 1);
        let ((run, req), tree) = (
            &claims[0],
            naac_ledger::order_tree(&[(0, 0), (1, 0), (2, 0)]),
        );
        assert_eq!(*run, (1, 0));
        let Request::Claim { index, proof, .. } = req else {
            panic!("a claim");
        };
        assert_eq!(*index, 1);
        assert!(naac_ledger::merkle::verify_inclusion(
            &naac_ledger::order_leaf(1, 0),
            1,
            3,
            proof,
            &tree.root()
        ));
        // Not settled (the bank could not be asked): sent again later. Then done.
        c.answered(job(), &[]);
        assert_eq!(c.due(later + LOOK_EVERY), vec![job()]);
        c.answered(job(), &[(1, 0)]);
        assert!(c.due(later + 2 * LOOK_EVERY).is_empty());
    }

    #[test]
    fn claims_open_in_the_last_window_and_a_closed_escrow_is_forgotten() {
        let mut c = Claims::default();
        let t = Instant::now();
        let order = SignedOrder {
            bytes: vec![9],
            sig: vec![9],
        };
        c.ordered(job(), order, vec![(0, 0)], t).expect("room");
        c.made(&job(), (0, 0), record(0));
        c.due(t);
        assert_eq!(
            c.looked(job(), Some(&view(false, 10_000)), 8_999),
            Step::Wait
        );
        c.due(t + LOOK_EVERY);
        assert!(matches!(
            c.looked(job(), Some(&view(false, 10_000)), 9_000),
            Step::Claim(v) if v.len() == 1
        ));
        let mut closed = view(true, 10_000);
        closed.closed = true;
        assert_eq!(c.looked(job(), Some(&closed), 9_500), Step::Forget);
        assert!(!c.wants(&job(), (0, 0)));
    }
}
