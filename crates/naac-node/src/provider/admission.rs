//! Admission: whether a peer's `Hello` and `Assign` may be served here — the node's role,
//! the owner's allow and deny lists (naming the peer or the user its `Hello` attested), the
//! owner's minimum price (no work for a peer that did not solicit and receive this node's
//! ask for the job), the task limits, the size of the assignment, and how much one requester
//! may have here at once ([`peer_room`]: jobs and tasks per peer). A pure function of the
//! policy, the asks made, what the peer holds here and what it sent; the shell performs the
//! answer. A provider paid at a bank also checks the job's escrow there ([`escrow_covers`]).

use naac_net::PeerId;
use naac_proto::{Assign, EscrowView, Hello, MAX_TASKS_PER_ASSIGN, UserAttestation};
use naac_types::policy::Policy;
use naac_types::units::format_size;
use naac_types::{Credits, JobId, Limits, Price};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;

/// What admission looks at: the node's role and its owner's policy (`None`: no owner
/// policy applies, as in embedded pools).
#[derive(Clone, Copy)]
pub struct Admission<'a> {
    pub provide: bool,
    pub policy: Option<&'a Policy>,
    /// The asks this node made, by requester and job.
    pub asked: &'a Asked,
}

/// Most asks remembered (the oldest go first).
pub const MAX_ASKED: usize = 4096;

/// The asks this node made: which requester solicited one for which job (bounded).
#[derive(Debug, Default)]
pub struct Asked {
    set: HashSet<(PeerId, JobId)>,
    order: VecDeque<(PeerId, JobId)>,
}

impl Asked {
    /// This node sent `peer` an ask for `job`.
    pub fn insert(&mut self, peer: PeerId, job: JobId) {
        if !self.set.insert((peer, job)) {
            return;
        }
        self.order.push_back((peer, job));
        while self.order.len() > MAX_ASKED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    pub fn contains(&self, peer: &PeerId, job: &JobId) -> bool {
        self.set.contains(&(*peer, *job))
    }
}

/// Whether the escrow of `job`, as its bank has it (`view`), pays for `in_flight` copies
/// here (those held and those assigned now) at `price` per giga-fuel and `fuel` each: it
/// exists, is open, was funded by `user` (the requester's attested user, the only one who
/// can pay from it), pays at least `price`, allows the job's fuel limit, and holds their
/// worst case. `Err(why)` otherwise.
pub fn escrow_covers(
    job: &JobId,
    view: Option<&EscrowView>,
    user: Option<[u8; 32]>,
    price: Price,
    fuel: u64,
    in_flight: u64,
) -> Result<(), String> {
    let Some(e) = view else {
        return Err(format!(
            "job {} has no escrow at the bank this host is paid at",
            job.short()
        ));
    };
    if e.closed {
        return Err(format!("the escrow of job {} is closed", job.short()));
    }
    let Some(user) = user else {
        return Err("paid work here needs a Hello that names its user (the escrow's payer)".into());
    };
    if e.signer().0 != user {
        return Err(format!(
            "the escrow of job {} is not paid by the user your Hello names",
            job.short()
        ));
    }
    if e.max_price < price {
        return Err(format!(
            "the escrow of job {} pays at most {} credits per giga-fuel; this host asks {price}",
            job.short(),
            e.max_price
        ));
    }
    if fuel > e.fuel_limit {
        return Err(format!(
            "the job's fuel limit {fuel} is above its escrow's {}",
            e.fuel_limit
        ));
    }
    if e.claim_window_ms > 0 {
        // Paid from what the payer's committed orders reserve for this host: a run's worst
        // case at the escrow's terms each, which only paying this host (or rejecting a run
        // of it) frees.
        if e.closing {
            return Err(format!("the escrow of job {} is closing", job.short()));
        }
        let need = Credits(e.max_price.cost(e.fuel_limit).0.saturating_mul(in_flight));
        if e.reserved_for < need {
            return Err(format!(
                "the escrow of job {} reserves {} credits for this host; the {in_flight} tasks here need {need} (commit their orders first)",
                job.short(),
                e.reserved_for
            ));
        }
        return Ok(());
    }
    let need = Credits(price.cost(fuel).0.saturating_mul(in_flight));
    if e.left < need {
        return Err(format!(
            "the escrow of job {} holds {} credits; the {in_flight} tasks here may cost up to {need}",
            job.short(),
            e.left
        ));
    }
    Ok(())
}

/// Whether assignment `a` carries the payer's signed order for exactly its runs, to this
/// host (`me`) at `bank`, at no less than `price`, and the escrow (`view`) gives providers at
/// least `min_window_ms` to claim what the payer leaves unpaid. The order, and its runs,
/// are what this host later claims with. `Err(why)` otherwise.
pub fn order_covers(
    a: &Assign,
    view: &EscrowView,
    me: &naac_ledger::AccountKey,
    bank: &naac_ledger::AccountKey,
    price: Price,
    (min_window_ms, now_ms): (u64, u64),
) -> Result<(naac_ledger::SignedOrder, Vec<(u32, u32)>), String> {
    // Time to run the work and claim it: the window, a task's timeout and a minute.
    let runway = min_window_ms
        .saturating_add(a.limits.timeout_ms)
        .saturating_add(60_000);
    if view.expires_ms.saturating_sub(now_ms) < runway {
        return Err(format!(
            "the escrow of job {} expires too soon to run its work and claim it",
            a.job.short()
        ));
    }
    if view.claim_window_ms < min_window_ms {
        return Err(format!(
            "the escrow of job {} gives providers {} s to claim unpaid results; this host needs {} s (run with --claim-window)",
            a.job.short(),
            view.claim_window_ms / 1000,
            min_window_ms.div_ceil(1000)
        ));
    }
    let Some(wire) = &a.order else {
        return Err("paid work here needs the payer's signed order with each assignment".into());
    };
    let signed = naac_ledger::SignedOrder {
        bytes: wire.bytes.clone(),
        sig: wire.sig.clone(),
    };
    let Some(order) = signed.order() else {
        return Err("the assignment's order does not decode".into());
    };
    let runs: Vec<(u32, u32)> = a.tasks.iter().map(|t| (t.index, t.attempt)).collect();
    let problem = if order.bank != *bank {
        Some("is for another bank")
    } else if order.job != a.job {
        Some("is for another job")
    } else if order.provider != *me {
        Some("is for another provider")
    } else if order.price < price {
        Some("pays less than this host asks")
    } else if order.tasks as usize != runs.len()
        || order.tasks_root != naac_ledger::order_tree(&runs).root()
    {
        Some("does not list the assigned runs")
    } else if !signed.signed_by(&naac_ledger::AccountKey(view.signer().0)) {
        Some("is not signed by the escrow's payer")
    } else {
        None
    };
    match problem {
        Some(p) => Err(format!("the order of job {} {p}", a.job.short())),
        None => Ok((signed, runs)),
    }
}

impl Admission<'_> {
    /// Whether to welcome `peer`: `Ok` with the user its `Hello` proves it works for (if
    /// any), or `Err(why)`.
    pub fn hello(&self, peer: &PeerId, hello: &Hello) -> Result<Option<String>, String> {
        if !self.provide {
            return Err(NOT_A_PROVIDER.into());
        }
        if let Some(pol) = self.policy
            && pol.min_price > 0
            && hello.solicit.is_none()
        {
            // The owner set a price: no work for requesters that do not pay.
            return Err(format!(
                "this host works only for pay (its owner's min_price is {} credits per giga-fuel); run with --bank ADDR",
                pol.min_price
            ));
        }
        Ok(attested_user(peer, hello))
    }

    /// Whether `a` from `peer` (which works for `user`, if its `Hello` said so, and shows a
    /// token with verdict `token` for `a`'s job) may run here; `Err(why)` refuses it.
    pub fn assign(
        &self,
        peer: &PeerId,
        user: Option<&str>,
        token: Option<Result<(), String>>,
        a: &Assign,
    ) -> Result<(), String> {
        if !self.provide {
            return Err(NOT_A_PROVIDER.into());
        }
        if a.tasks.len() > MAX_TASKS_PER_ASSIGN {
            return Err(format!(
                "{} tasks in one assignment; the limit is {MAX_TASKS_PER_ASSIGN}",
                a.tasks.len()
            ));
        }
        if let Some(why) = self.denied(peer, user, token) {
            return Err(format!("this node's owner does not serve you: {why}"));
        }
        if let Some(why) = self.exceeds_limits(&a.limits) {
            return Err(why);
        }
        if let Some(pol) = self.policy
            && pol.min_price > 0
            && !self.asked.contains(peer, &a.job)
        {
            // Work for pay only: the requester must have solicited this node's ask for the
            // job (a paid Hello) before it assigns it.
            return Err(format!(
                "this host works only for pay and made you no ask for job {}; greet it with a paid Hello first (run with --bank ADDR)",
                a.job.short()
            ));
        }
        Ok(())
    }

    /// Why `peer` (working for `user`, showing a token with verdict `token`) may not use
    /// this node at all, if it may not.
    pub fn denied(
        &self,
        peer: &PeerId,
        user: Option<&str>,
        token: Option<Result<(), String>>,
    ) -> Option<String> {
        self.policy?
            .peer_access(&peer.to_string(), user, token)
            .err()
    }

    /// Why tasks with `limits` may not run here, if they may not.
    pub fn exceeds_limits(&self, limits: &Limits) -> Option<String> {
        let pol = self.policy?;
        if let Some(max) = pol.max_task_memory
            && limits.memory > max
        {
            return Some(format!(
                "task memory {} > its limit {}",
                format_size(limits.memory),
                format_size(max)
            ));
        }
        if let Some(max) = pol.max_task_runtime
            && u128::from(limits.timeout_ms) > max.as_millis()
        {
            return Some(format!(
                "task time limit {:?} > its limit {:?}",
                Duration::from_millis(limits.timeout_ms),
                max
            ));
        }
        None
    }
}

/// Most jobs one requester (peer) may have on this node at once. A requester's peer id is
/// made per run and a run is one job, so an honest one has one; each job costs state, a
/// heartbeat report every 2 s and perhaps a module.
pub const MAX_JOBS_PER_PEER: usize = 16;

/// Most task attempts one requester may have on this node at once, over all its jobs:
/// queued, running, finished and not yet acknowledged, or handed back and not yet reported
/// (at least; [`max_tasks_per_peer`] allows more on a node with many slots). The scheduler
/// feeds a provider its slots plus at most 64 queued per slot, far below this.
pub const MAX_TASKS_PER_PEER: usize = 8192;

/// Most task attempts one requester may have on a node with `slots` slots: 128 per slot,
/// and at least [`MAX_TASKS_PER_PEER`].
pub fn max_tasks_per_peer(slots: u32) -> usize {
    MAX_TASKS_PER_PEER.max((slots as usize).saturating_mul(128))
}

/// What one requester has on this node now.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerLoad {
    /// Its jobs here.
    pub jobs: usize,
    /// Task attempts of those jobs this node holds or still has to report.
    pub tasks: usize,
    /// Whether the job of the `Assign` at hand is one of them.
    pub known_job: bool,
}

/// How many of an `Assign`'s `n` tasks a requester with `load` on a node with `slots` slots
/// may add (the first ones; the rest go back unstarted, as after a pause), or why the
/// `Assign` is refused: a new job beyond [`MAX_JOBS_PER_PEER`], or nothing left of
/// [`max_tasks_per_peer`].
pub fn peer_room(load: PeerLoad, n: usize, slots: u32) -> Result<usize, String> {
    if !load.known_job && load.jobs >= MAX_JOBS_PER_PEER {
        return Err(format!(
            "you have {} jobs on this node, the most one requester may have; finish or cancel one first",
            load.jobs
        ));
    }
    let limit = max_tasks_per_peer(slots);
    if load.tasks >= limit {
        return Err(format!(
            "you have {} tasks on this node, the most one requester may have is {limit}; wait for results",
            load.tasks
        ));
    }
    Ok(n.min(limit - load.tasks))
}

const NOT_A_PROVIDER: &str = "this node does not run tasks (it is a bank or a relay)";

/// The user whose key signed `peer`'s session id in its `Hello`, if the signature holds.
pub fn attested_user(peer: &PeerId, hello: &Hello) -> Option<String> {
    let u = hello.user.as_ref()?;
    let id: PeerId = u.user.parse().ok()?;
    let bytes = UserAttestation::signing_bytes(&peer.to_bytes());
    naac_net::verify(&id, &bytes, &u.signature).then(|| u.user.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use naac_net::Keypair;
    use naac_proto::{Solicit, TaskSpec};
    use naac_types::{ContentId, JobId, Price};
    use std::path::Path;

    fn policy(toml: &str) -> Policy {
        Policy::parse(Path::new("policy.toml"), toml).expect("a valid policy")
    }

    fn hello(user: Option<(&Keypair, &PeerId)>, paid: bool) -> Hello {
        Hello {
            user: user.map(|(key, session)| UserAttestation {
                user: key.public().to_peer_id().to_string(),
                signature: naac_net::sign(
                    key,
                    &UserAttestation::signing_bytes(&session.to_bytes()),
                ),
            }),
            pass: None,
            solicit: paid.then(|| Solicit {
                job: JobId::derive(&ContentId::of(b"j"), b"1"),
                max_price: Price(1),
                fuel: 1,
                bank: None,
            }),
        }
    }

    fn assign(tasks: usize, limits: Limits) -> Assign {
        let spec = TaskSpec {
            index: 0,
            attempt: 0,
            args: Vec::new(),
            stdin: None,
            inputs: Vec::new(),
            seed: ContentId::of(b"s"),
            resume: None,
            env: Vec::new(),
        };
        Assign {
            job: JobId::derive(&ContentId::of(b"j"), b"1"),
            seq: 1,
            module: ContentId::of(b"m"),
            argv0: "job".into(),
            limits,
            checkpoint_interval_ms: None,
            order: None,
            sources: Vec::new(),
            hold_over: None,
            holders: Vec::new(),
            inline: Vec::new(),
            reply_with_results: false,
            tasks: vec![spec; tasks],
        }
    }

    #[test]
    fn a_requester_has_at_most_its_share_of_jobs_and_tasks() {
        let load = |jobs, tasks, known_job| PeerLoad {
            jobs,
            tasks,
            known_job,
        };
        // An honest feed: slots plus a queue.
        assert_eq!(peer_room(load(1, 100, true), 65, 1), Ok(65));
        assert_eq!(peer_room(load(0, 0, false), 4096, 1), Ok(4096));
        // A new job past the limit is refused; more tasks of a known job are not.
        let r = peer_room(load(MAX_JOBS_PER_PEER, 10, false), 1, 1);
        assert!(r.as_ref().is_err_and(|w| w.contains("16 jobs")), "{r:?}");
        assert_eq!(peer_room(load(MAX_JOBS_PER_PEER, 10, true), 1, 1), Ok(1));
        // Tasks: the excess of an assignment goes back; at the limit, all of it.
        assert_eq!(
            peer_room(load(2, MAX_TASKS_PER_PEER - 10, true), 4096, 1),
            Ok(10)
        );
        let r = peer_room(load(2, MAX_TASKS_PER_PEER, true), 1, 1);
        assert!(
            r.as_ref().is_err_and(|w| w.contains("tasks on this node")),
            "{r:?}"
        );
        // A node with many slots allows more.
        assert_eq!(max_tasks_per_peer(256), 256 * 128);
        assert_eq!(
            peer_room(load(1, MAX_TASKS_PER_PEER, true), 4096, 256),
            Ok(4096)
        );
    }

    #[test]
    fn a_user_is_attested_only_by_its_own_signature_over_this_session() {
        let user = Keypair::generate_ed25519();
        let session = PeerId::random();
        let h = hello(Some((&user, &session)), false);
        assert_eq!(
            attested_user(&session, &h),
            Some(user.public().to_peer_id().to_string())
        );
        // Replayed by another session: not attested.
        assert_eq!(attested_user(&PeerId::random(), &h), None);
        // Claims another user's name with its own signature.
        let mut forged = h.clone();
        forged.user.as_mut().expect("user").user = Keypair::generate_ed25519()
            .public()
            .to_peer_id()
            .to_string();
        assert_eq!(attested_user(&session, &forged), None);
    }

    #[test]
    fn an_owner_with_a_price_welcomes_only_paying_requesters() {
        let pol = policy("min_price = 2\n");
        let asked = Asked::default();
        let a = Admission {
            provide: true,
            policy: Some(&pol),
            asked: &asked,
        };
        let peer = PeerId::random();
        let why = a
            .hello(&peer, &hello(None, false))
            .expect_err("unpaid refused");
        assert!(why.contains("works only for pay"), "{why}");
        assert_eq!(a.hello(&peer, &hello(None, true)), Ok(None));
        // No policy (an embedded pool): everyone.
        let open = Admission {
            provide: true,
            policy: None,
            asked: &asked,
        };
        assert_eq!(open.hello(&peer, &hello(None, false)), Ok(None));
    }

    #[test]
    fn a_bank_only_node_runs_nothing() {
        let asked = Asked::default();
        let a = Admission {
            provide: false,
            policy: None,
            asked: &asked,
        };
        let peer = PeerId::random();
        assert_eq!(
            a.hello(&peer, &hello(None, true)),
            Err(NOT_A_PROVIDER.into())
        );
        assert_eq!(
            a.assign(&peer, None, None, &assign(1, Limits::default())),
            Err(NOT_A_PROVIDER.into())
        );
    }

    #[test]
    fn deny_and_allow_lists_name_peers_or_their_users() {
        let (bad, good) = (PeerId::random(), PeerId::random());
        let pol = policy(&format!("deny = [\"{bad}\"]\n"));
        let asked = Asked::default();
        let a = Admission {
            provide: true,
            policy: Some(&pol),
            asked: &asked,
        };
        let why = a
            .assign(&bad, None, None, &assign(1, Limits::default()))
            .expect_err("denied");
        assert!(
            why.starts_with("this node's owner does not serve you: "),
            "{why}"
        );
        assert_eq!(
            a.assign(&good, None, None, &assign(1, Limits::default())),
            Ok(())
        );
        // An allow list naming a user: a session working for that user gets in.
        let pol = policy(&format!("allow = [\"{good}\"]\n"));
        let asked = Asked::default();
        let a = Admission {
            provide: true,
            policy: Some(&pol),
            asked: &asked,
        };
        let session = PeerId::random();
        assert!(a.denied(&session, None, None).is_some());
        assert_eq!(a.denied(&session, Some(&good.to_string()), None), None);
    }

    #[test]
    fn oversized_assignments_and_tasks_over_the_owners_limits_are_refused() {
        let pol = policy("max_task_memory = \"256MiB\"\nmax_task_runtime = \"1m\"\n");
        let asked = Asked::default();
        let a = Admission {
            provide: true,
            policy: Some(&pol),
            asked: &asked,
        };
        let peer = PeerId::random();
        let small = Limits {
            memory: 128 << 20,
            timeout_ms: 30_000,
            ..Limits::default()
        };
        assert_eq!(a.assign(&peer, None, None, &assign(1, small)), Ok(()));
        let why = a
            .assign(&peer, None, None, &assign(MAX_TASKS_PER_ASSIGN + 1, small))
            .expect_err("too many");
        assert!(why.contains("tasks in one assignment"), "{why}");
        let big = Limits {
            memory: 512 << 20,
            ..small
        };
        assert_eq!(
            a.assign(&peer, None, None, &assign(1, big)),
            Err("task memory 512 MiB > its limit 256 MiB".into())
        );
        let slow = Limits {
            timeout_ms: 120_000,
            ..small
        };
        assert_eq!(
            a.assign(&peer, None, None, &assign(1, slow)),
            Err("task time limit 120s > its limit 60s".into())
        );
    }

    #[test]
    fn a_priced_host_runs_only_jobs_it_made_the_requester_an_ask_for() {
        let pol = policy("min_price = 1\n");
        let mut asked = Asked::default();
        let (paid, stranger) = (PeerId::random(), PeerId::random());
        let job = assign(1, Limits::default());
        asked.insert(paid, job.job);
        let a = Admission {
            provide: true,
            policy: Some(&pol),
            asked: &asked,
        };
        assert_eq!(a.assign(&paid, None, None, &job), Ok(()));
        let why = a
            .assign(&stranger, None, None, &job)
            .expect_err("no ask, no work");
        assert!(why.contains("made you no ask for job"), "{why}");
        // The ask is for one job only.
        let mut other = assign(1, Limits::default());
        other.job = JobId::derive(&ContentId::of(b"other"), b"1");
        assert!(a.assign(&paid, None, None, &other).is_err());
        // An unpriced host takes work without an ask.
        let free = policy("");
        let a = Admission {
            provide: true,
            policy: Some(&free),
            asked: &asked,
        };
        assert_eq!(a.assign(&stranger, None, None, &job), Ok(()));
    }

    #[test]
    fn the_asks_remembered_are_bounded_oldest_first() {
        let mut asked = Asked::default();
        let job = JobId::derive(&ContentId::of(b"j"), b"1");
        let first = PeerId::random();
        asked.insert(first, job);
        for _ in 0..MAX_ASKED {
            asked.insert(PeerId::random(), job);
        }
        assert!(!asked.contains(&first, &job));
        assert_eq!(asked.order.len(), MAX_ASKED);
    }

    #[test]
    fn an_escrow_pays_only_its_payers_work_at_the_price_in_full() {
        let job = JobId::derive(&ContentId::of(b"e"), b"1");
        let payer = [7u8; 32];
        let view = EscrowView {
            payer: naac_proto::AccountKey(payer),
            controller: None,
            left: Credits(300_000),
            max_price: Price(2_000_000),
            fuel_limit: 100_000_000,
            closed: false,
            expires_ms: u64::MAX,
            claim_window_ms: 0,
            closing: false,
            reserved_for: Credits::ZERO,
        };
        // 1 credit per giga-fuel × 0.1 giga-fuel = 100 µcredits a task: 3 fit.
        let check = |v: Option<&EscrowView>, user, price, fuel, n| {
            escrow_covers(&job, v, user, Price(price), fuel, n)
        };
        assert_eq!(
            check(Some(&view), Some(payer), 1_000_000, 100_000_000, 3),
            Ok(())
        );
        let why = |r: Result<(), String>| r.expect_err("refused");
        assert!(
            why(check(Some(&view), Some(payer), 1_000_000, 100_000_000, 4))
                .contains("may cost up to")
        );
        assert!(why(check(None, Some(payer), 1, 1, 1)).contains("has no escrow"));
        assert!(why(check(Some(&view), None, 1, 1, 1)).contains("names its user"));
        assert!(why(check(Some(&view), Some([8; 32]), 1, 1, 1)).contains("not paid by the user"));
        assert!(why(check(Some(&view), Some(payer), 3_000_000, 1, 1)).contains("pays at most"));
        assert!(
            why(check(Some(&view), Some(payer), 1, 200_000_000, 1)).contains("above its escrow's")
        );
        let closed = EscrowView {
            closed: true,
            ..view.clone()
        };
        assert!(why(check(Some(&closed), Some(payer), 1, 1, 1)).contains("is closed"));
    }
}
