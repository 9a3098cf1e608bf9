//! Unit tests of the tally: result checks, verifier outcomes, quorum verdicts, payments,
//! reputation changes and discrepancy records.

use super::*;
use naac_net::Keypair;
use naac_proto::OutputFile;

const FUEL_LIMIT: u64 = 1_000;

struct Host {
    key: Keypair,
    peer: PeerId,
}

fn host() -> Host {
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    Host { key, peer }
}

fn job() -> JobId {
    JobId::derive(&ContentId::of(b"tally job"), b"1")
}

fn input(index: u32) -> ContentId {
    ContentId::of(&index.to_le_bytes())
}

/// A tally of 10 tasks with tasks 0..5 open.
fn tally(has_verifier: bool) -> Tally {
    let mut t = Tally::new(
        job(),
        ContentId::of(b"module"),
        10,
        FUEL_LIMIT,
        has_verifier,
    );
    for i in 0..5 {
        t.open(i, 1, || input(i));
    }
    t
}

/// A result of `index` printing `stdout`, signed by `h` over its true record.
fn result(h: &Host, index: u32, attempt: u32, stdout: &[u8]) -> TaskResult {
    let mut r = TaskResult {
        index,
        attempt,
        outcome: Some(Outcome::Ok),
        exit_code: Some(0),
        message: String::new(),
        fuel_used: 100,
        wall_us: 10,
        stdout: stdout.to_vec(),
        stderr: Vec::new(),
        outputs: Vec::new(),
        signature: Vec::new(),
        checkpoints: 0,
        resumed: None,
        held: Vec::new(),
    };
    sign(h, &mut r);
    r
}

fn sign(h: &Host, r: &mut TaskResult) {
    let rec = ResultRecord {
        job: job(),
        task: r.index,
        attempt: r.attempt,
        module: ContentId::of(b"module"),
        input: input(r.index),
        output: r.output_digest(),
        outcome: r.outcome.expect("signed results have an outcome"),
        fuel_used: r.fuel_used,
    };
    r.signature = naac_net::sign(&h.key, &rec.signing_bytes());
}

fn check(t: &mut Tally, h: &Host, r: &TaskResult) -> Check {
    let signed = t.signatures(h.peer, std::slice::from_ref(r));
    t.check(h.peer, r, signed[0].as_ref())
}

/// Checks `r` and, when it is a vote, adds it; returns its digest.
fn vote(t: &mut Tally, h: &Host, r: TaskResult) -> ContentId {
    let Check::Vote { digest, record, .. } = check(t, h, &r) else {
        panic!("expected a vote")
    };
    t.add_vote(h.peer, r, digest, record);
    digest
}

#[test]
fn a_signed_result_is_a_vote_and_its_verdict_writes_and_pays_it() {
    let (mut t, h) = (tally(false), host());
    let r = result(&h, 1, 0, b"42\n");
    let d = vote(&mut t, &h, r.clone());
    assert_eq!(d, r.output_digest());
    assert_eq!(t.fuel_spent, 100);
    let v = t.verdict(1, Some(d), false, &[(h.peer, d)]);
    let (written, copies) = v.write.expect("the accepted copy is written");
    assert_eq!(
        (written.provider, written.result.stdout.as_slice(), copies),
        (h.peer, &b"42\n"[..], 1)
    );
    assert_eq!(v.pay.len(), 1);
    let rec = &v.pay[0];
    assert_eq!((rec.provider, rec.attempt), (h.peer, 0));
    assert!(
        naac_net::verify(&h.peer, &rec.record, &rec.signature),
        "pays the signed record"
    );
    assert!(
        v.reputation.is_empty(),
        "a single copy says nothing about anyone"
    );
    assert_eq!(t.fuel, 100);
    assert_eq!(t.stats[&h.peer].accepted, 1);
    // Closed: a late copy is stale.
    assert_eq!(check(&mut t, &h, &result(&h, 1, 1, b"42\n")), Check::Stale);
}

#[test]
fn a_forged_signature_is_refused_and_counted_against_the_sender() {
    let (mut t, h, other) = (tally(false), host(), host());
    // Signed by another key.
    let r = result(&other, 2, 0, b"x");
    assert_eq!(check(&mut t, &h, &r), Check::Refused(FailureKind::Rejected));
    // Signed over other bytes: the stdout was changed after signing.
    let mut r = result(&h, 2, 1, b"x");
    r.stdout = b"y".to_vec();
    assert_eq!(check(&mut t, &h, &r), Check::Refused(FailureKind::Rejected));
    assert_eq!(t.rejected_results, 2);
    assert_eq!(t.stats[&h.peer].rejected, 2);
    assert!(!t.task_failed(2, FailureKind::Rejected));
    assert_eq!(
        t.failures[0].message,
        "the result's signature does not match its record"
    );
}

#[test]
fn fuel_above_the_limit_is_refused_even_when_signed() {
    let (mut t, h) = (tally(false), host());
    let mut r = result(&h, 3, 0, b"x");
    r.fuel_used = FUEL_LIMIT + 1;
    sign(&h, &mut r);
    assert_eq!(check(&mut t, &h, &r), Check::Refused(FailureKind::Rejected));
    t.task_failed(3, FailureKind::Rejected);
    assert_eq!(
        t.failures[0].message,
        "the result claims more fuel than the task's limit"
    );
}

#[test]
fn failures_that_are_not_provably_the_providers_are_retried_with_their_message() {
    let (mut t, h) = (tally(false), host());
    // Could not run it at all: no outcome, no signature.
    let mut r = result(&h, 0, 0, b"");
    r.outcome = None;
    r.message = "module fetch failed".into();
    assert_eq!(check(&mut t, &h, &r), Check::Failed(FailureKind::Rejected));
    assert!(t.failed_before(0));
    // A trap, signed.
    let mut r = result(&h, 1, 0, b"");
    r.outcome = Some(Outcome::Trap);
    r.message = "unreachable".into();
    sign(&h, &mut r);
    assert_eq!(check(&mut t, &h, &r), Check::Failed(FailureKind::Trap));
    // An output name that escapes /out.
    let mut r = result(&h, 2, 0, b"");
    r.outputs = vec![OutputFile {
        name: "../etc/passwd".into(),
        data: b"x".to_vec(),
    }];
    sign(&h, &mut r);
    assert_eq!(check(&mut t, &h, &r), Check::Failed(FailureKind::Rejected));
    assert_eq!(t.rejected_results, 0, "nobody is blamed");
    t.task_failed(1, FailureKind::Trap);
    t.task_failed(2, FailureKind::Rejected);
    assert_eq!(t.failures[0].message, "unreachable");
    assert!(
        t.failures[1]
            .message
            .contains("is not a safe relative path")
    );
}

#[test]
fn unknown_and_closed_tasks_are_stale() {
    let (mut t, h) = (tally(false), host());
    assert_eq!(check(&mut t, &h, &result(&h, 10, 0, b"")), Check::Stale);
    // Task 7 exists but was never assigned.
    assert_eq!(check(&mut t, &h, &result(&h, 7, 0, b"")), Check::Stale);
    assert_eq!(t.fuel_spent, 0);
}

#[test]
fn verifier_outcomes_accept_refuse_or_retry() {
    let (mut t, h) = (tally(true), host());
    let r = result(&h, 1, 0, b"ok");
    let signed = t.signatures(h.peer, std::slice::from_ref(&r));
    let (record, _) = signed[0].clone().expect("rebuilt");
    assert_eq!(t.check(h.peer, &r, signed[0].as_ref()), Check::Verify);
    assert!(matches!(
        t.verified(h.peer, &r, &record, Ok(None)),
        Check::Vote { .. }
    ));
    assert_eq!(
        t.verified(h.peer, &r, &record, Ok(Some("exit 1".into()))),
        Check::Refused(FailureKind::Unverified)
    );
    assert_eq!(t.stats[&h.peer].rejected, 1);
    assert_eq!(
        t.verified(h.peer, &r, &record, Err("out of memory".into())),
        Check::Failed(FailureKind::Rejected)
    );
    assert_eq!(
        t.stats[&h.peer].rejected, 1,
        "the requester's own failure blames nobody"
    );
    t.task_failed(1, FailureKind::Rejected);
    assert_eq!(t.failures[0].message, "verifier: out of memory");
}

#[test]
fn a_quorum_pays_the_agreeing_copies_and_marks_the_dissenter() {
    let (mut t, a, b, c) = (tally(false), host(), host(), host());
    let good = vote(&mut t, &a, result(&a, 4, 0, b"right"));
    vote(&mut t, &b, result(&b, 4, 1, b"right"));
    let bad = vote(&mut t, &c, result(&c, 4, 2, b"wrong"));
    let votes = [(a.peer, good), (b.peer, good), (c.peer, bad)];
    let v = t.verdict(4, Some(good), true, &votes);
    let (w, copies) = v.write.expect("written");
    assert_eq!((w.digest, copies), (good, 3));
    let mut paid: Vec<PeerId> = v.pay.iter().map(|p| p.provider).collect();
    paid.sort();
    let mut agreeing = vec![a.peer, b.peer];
    agreeing.sort();
    assert_eq!(paid, agreeing, "only agreeing copies are paid");
    assert!(v.reputation.contains(&RepChange {
        provider: a.peer,
        verified: 1,
        rejected: 0,
        streak: Streak::Current
    }));
    assert!(v.reputation.contains(&RepChange {
        provider: c.peer,
        verified: 0,
        rejected: 1,
        streak: Streak::Reset
    }));
    assert_eq!(v.suspects, vec![c.peer]);
    assert_eq!(t.stats[&b.peer].verified, 1);
    assert_eq!(t.stats[&c.peer].rejected, 1);
    let d = &t.discrepancies[0];
    assert_eq!((d.task, d.accepted.clone()), (4, Some(good.to_hex())));
    assert_eq!(d.sides.len(), 2);
    assert_eq!(d.sides[0].providers.len() + d.sides[1].providers.len(), 3);
}

#[test]
fn no_quorum_writes_and_pays_nothing_and_blames_nobody() {
    let (mut t, a, b) = (tally(false), host(), host());
    let x = vote(&mut t, &a, result(&a, 0, 0, b"x"));
    let y = vote(&mut t, &b, result(&b, 0, 1, b"y"));
    let v = t.verdict(0, None, false, &[(a.peer, x), (b.peer, y)]);
    assert!(v.write.is_none() && v.pay.is_empty() && v.suspects.is_empty());
    assert!(
        v.reputation
            .iter()
            .all(|r| r.verified == 0 && r.rejected == 0)
    );
    assert_eq!(t.discrepancies[0].accepted, None);
    assert!(!t.task_failed(0, FailureKind::NoQuorum));
    assert_eq!(
        t.failures[0].message,
        "its replicas disagreed and no output reached the quorum"
    );
}

#[test]
fn a_resumed_run_asks_for_a_check_once_and_a_returned_one_forgets_it() {
    let (mut t, h) = (tally(false), host());
    t.resuming(1, 3);
    t.resuming(2, 0);
    t.returned(2, 0);
    let r = result(&h, 1, 3, b"");
    assert!(matches!(
        check(&mut t, &h, &r),
        Check::Vote { resumed: true, .. }
    ));
    assert!(matches!(
        check(&mut t, &h, &r),
        Check::Vote { resumed: false, .. }
    ));
    let r = result(&h, 2, 0, b"");
    assert!(matches!(
        check(&mut t, &h, &r),
        Check::Vote { resumed: false, .. }
    ));
}

#[test]
fn a_reopened_task_that_fails_its_recheck_removes_the_written_result() {
    let (mut t, h) = (tally(false), host());
    t.reopened(3);
    assert!(t.task_failed(3, FailureKind::Lost));
    assert_eq!(
        t.failures[0].message,
        "its providers vanished or stopped reporting"
    );
    // A reopened task that is accepted again keeps its result.
    t.reopened(4);
    let d = vote(&mut t, &h, result(&h, 4, 1, b"z"));
    t.verdict(4, Some(d), false, &[(h.peer, d)]);
    assert!(!t.task_failed(4, FailureKind::Lost));
}

#[test]
fn closing_a_task_forgets_everything_it_needed() {
    let (mut t, h) = (tally(false), host());
    // Task 0: resumed, failed once, then accepted; task 1: resumed and failed for good.
    t.resuming(0, 1);
    t.resuming(1, 0);
    t.unsendable(0, "could not read an input".into());
    let d = vote(&mut t, &h, result(&h, 0, 2, b"x"));
    t.verdict(0, Some(d), false, &[(h.peer, d)]);
    t.task_failed(1, FailureKind::Lost);
    assert_eq!(
        t.remembered(),
        3,
        "only the untouched open tasks 2, 3 and 4 remain"
    );
}

#[test]
fn results_larger_than_any_sandbox_allows_are_refused() {
    let (mut t, h) = (tally(false), host());
    // A million tiny files (a sandbox stops a guest at 10,000), signed by the sender.
    let mut r = result(&h, 1, 0, b"");
    r.outputs = (0..1_000_000)
        .map(|i| OutputFile {
            name: format!("f{i}"),
            data: Vec::new(),
        })
        .collect();
    sign(&h, &mut r);
    assert_eq!(check(&mut t, &h, &r), Check::Refused(FailureKind::Rejected));
    // Stdout over the sandbox's cap.
    let mut r = result(&h, 2, 0, b"");
    r.stdout = vec![b'x'; naac_sandbox::SandboxConfig::DEFAULT_STDOUT_LIMIT + 1];
    sign(&h, &mut r);
    assert_eq!(check(&mut t, &h, &r), Check::Refused(FailureKind::Rejected));
    // Exactly at the limits is fine.
    let mut r = result(&h, 3, 0, b"");
    r.outputs = (0..naac_sandbox::MAX_OUT_FILES)
        .map(|i| OutputFile {
            name: format!("f{i}"),
            data: Vec::new(),
        })
        .collect();
    sign(&h, &mut r);
    assert!(matches!(check(&mut t, &h, &r), Check::Vote { .. }));
    assert_eq!(t.stats[&h.peer].rejected, 2);
    t.task_failed(1, FailureKind::Rejected);
    assert_eq!(
        t.failures[0].message,
        "it returned 1000000 output files; a task may leave at most 10000"
    );
}

/// A signed result of `index` printing `stdout` and claiming `fuel`.
fn claiming(h: &Host, index: u32, attempt: u32, stdout: &[u8], fuel: u64) -> TaskResult {
    let mut r = result(h, index, attempt, stdout);
    r.fuel_used = fuel;
    sign(h, &mut r);
    r
}

#[test]
fn agreeing_copies_are_paid_for_at_most_the_lowest_fresh_claim() {
    let (mut t, a, b) = (tally(false), host(), host());
    let d = vote(&mut t, &a, claiming(&a, 0, 0, b"same", 100));
    vote(&mut t, &b, claiming(&b, 0, 1, b"same", 900));
    let v = t.verdict(0, Some(d), true, &[(a.peer, d), (b.peer, d)]);
    let fuel_of = |p: PeerId| v.pay.iter().find(|c| c.provider == p).map(|c| c.fuel);
    assert_eq!(
        fuel_of(a.peer),
        Some(None),
        "the lowest claim is paid as claimed"
    );
    assert_eq!(
        fuel_of(b.peer),
        Some(Some(100)),
        "the higher claim is paid the lowest"
    );
    // Two copies cannot say who lied: nobody is blamed.
    assert!(v.suspects.is_empty());
}

#[test]
fn a_claim_above_what_most_agreeing_copies_used_is_overbilling() {
    let (mut t, a, b, c) = (tally(false), host(), host(), host());
    let d = vote(&mut t, &a, claiming(&a, 1, 0, b"same", 100));
    vote(&mut t, &b, claiming(&b, 1, 1, b"same", 100));
    vote(&mut t, &c, claiming(&c, 1, 2, b"same", FUEL_LIMIT));
    let votes = [(a.peer, d), (b.peer, d), (c.peer, d)];
    let v = t.verdict(1, Some(d), true, &votes);
    assert_eq!(v.suspects, vec![c.peer]);
    assert!(v.reputation.contains(&RepChange {
        provider: c.peer,
        verified: 0,
        rejected: 1,
        streak: Streak::Reset
    }));
    let paid = v
        .pay
        .iter()
        .find(|p| p.provider == c.peer)
        .expect("still paid");
    assert_eq!(paid.fuel, Some(100), "for the honest fuel only");
    assert_eq!(t.stats[&c.peer].rejected, 1);
    assert_eq!(t.stats[&a.peer].verified, 1);
}

#[test]
fn a_resumed_copy_is_paid_its_own_claim_and_sets_no_price_for_the_others() {
    let (mut t, a, b) = (tally(false), host(), host());
    let d = vote(&mut t, &a, claiming(&a, 2, 0, b"same", 100));
    let mut resumed = claiming(&b, 2, 1, b"same", 40);
    resumed.resumed = Some(ContentId::of(b"checkpoint"));
    sign(&b, &mut resumed);
    vote(&mut t, &b, resumed);
    let v = t.verdict(2, Some(d), true, &[(a.peer, d), (b.peer, d)]);
    assert!(v.pay.iter().all(|p| p.fuel.is_none()), "{:?}", v.pay);
}

#[test]
fn kept_outputs_are_refused_unless_asked_for_and_as_asked() {
    let h = host();
    let held = |name: &str, len: u64| naac_proto::HeldOutput {
        name: name.into(),
        id: ContentId::of(name.as_bytes()),
        len,
    };
    let mut r = result(&h, 0, 1, b"x");
    assert_eq!(held_wrong(&r, None), None, "nothing kept, nothing to check");
    r.held = vec![held("big.bin", 2 << 20)];
    assert!(held_wrong(&r, None).is_some(), "not asked to keep any");
    assert_eq!(held_wrong(&r, Some(1 << 20)), None);
    r.held.push(held("small.bin", 10));
    assert!(
        held_wrong(&r, Some(1 << 20)).is_some(),
        "under the size asked"
    );
    r.held = vec![held("a", 2 << 20), held("a", 2 << 20)];
    assert!(held_wrong(&r, Some(1 << 20)).is_some(), "a name twice");
    r.held = vec![held("../escape", 2 << 20)];
    assert!(held_wrong(&r, Some(1 << 20)).is_some(), "an unsafe name");
    r.held = vec![held("huge", u64::MAX)];
    assert!(
        held_wrong(&r, Some(1 << 20)).is_some(),
        "over a task's limit"
    );
}
