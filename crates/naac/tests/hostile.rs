//! Peers that do not play by the rules, built from `naac-net` and `naac-proto` directly,
//! against real `naac node` processes on 127.0.0.1.

mod common;

use common::{Provider, Scratch, spawn_node};
use naac_net::{Event, Keypair, Multiaddr};
use naac_proto::{Assign, Request, RequestBody, Response, ResponseBody, TaskSpec, VERSION};
use naac_types::{ContentId, JobId, Limits};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const INPUT_BYTES: usize = 16 << 20;
const TASKS: u32 = 96;

/// The input of task `i`: 16 MiB made from its index, so the adversary need not hold them.
fn input(i: u32) -> Vec<u8> {
    let mut out = vec![0u8; INPUT_BYTES];
    blake3::Hasher::new_derive_key("naac hostile test input")
        .update(&i.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// A raw peer built from `naac-net` directly, connected to the node at `addr`.
async fn adversary(
    addr: Multiaddr,
) -> (
    naac_net::Client,
    tokio::sync::mpsc::Receiver<Event>,
    naac_net::PeerId,
) {
    let (client, mut events) = naac_net::start(
        Keypair::generate_ed25519(),
        naac_net::Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
            join: vec![addr],
            mdns: false,
            ..naac_net::Config::default()
        },
    )
    .await
    .expect("the adversary's network");
    loop {
        if let Event::Connected(p, _) = events.recv().await.expect("events") {
            return (client, events, p);
        }
    }
}

/// Resident memory of a process (kB), from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A requester that queues 96 tasks, each with its own 16 MiB input (1.5 GiB in all), on a
/// one-slot provider in one `Assign`: the provider fetches inputs only for the tasks about to
/// run, so its memory stays far below what it was sent.
#[test]
fn a_flood_of_large_inputs_does_not_fill_a_providers_memory() {
    let s = Scratch::new();
    let provider = Provider::start(&s, 1);
    let pid = provider.child.id();
    let addr: Multiaddr = provider.addr.parse().expect("the provider's address");
    let module = std::fs::read(common::examples().join("testkit/testkit.wasm")).expect("testkit");
    let module_id = ContentId::of(&module);
    let ids: HashMap<ContentId, u32> = (0..TASKS).map(|i| (ContentId::of(&input(i)), i)).collect();
    let by_index: HashMap<u32, ContentId> = ids.iter().map(|(id, i)| (*i, *id)).collect();

    // Sample the provider's memory while the flood runs.
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let outputs = rt.block_on(async {
        let (client, mut events, peer) = adversary(addr).await;
        let job = JobId::derive(&ContentId::of(b"hostile flood"), b"1");
        let tasks: Vec<TaskSpec> = (0..TASKS)
            .map(|i| TaskSpec {
                index: i,
                attempt: 0,
                args: vec!["readin".into(), "data".into()],
                stdin: None,
                inputs: vec![("data".into(), by_index[&i])],
                seed: ContentId::of(&i.to_le_bytes()),
                resume: None,
                env: Vec::new(),
            })
            .collect();
        let assign = Assign {
            job,
            seq: 1,
            module: module_id,
            argv0: "flood".into(),
            limits: Limits::default(),
            checkpoint_interval_ms: None,
            order: None,
            sources: Vec::new(),
            hold_over: None,
            holders: Vec::new(),
            inline: Vec::new(),
            reply_with_results: false,
            tasks,
        };
        let client2 = client.clone();
        tokio::spawn(async move {
            let r = client2
                .request(peer, Request::new(RequestBody::Assign(assign)))
                .await;
            assert!(
                matches!(
                    r,
                    Ok(Response {
                        body: ResponseBody::Ack,
                        ..
                    })
                ),
                "the provider takes the assignment: {r:?}"
            );
        });
        // Serve fetches (made on demand) and collect results until every task reported.
        let mut outputs: HashMap<u32, String> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(240);
        while outputs.len() < TASKS as usize && Instant::now() < deadline {
            let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await
            else {
                continue;
            };
            let Event::Request {
                request, channel, ..
            } = ev
            else {
                continue;
            };
            assert_eq!(request.v, VERSION);
            let body = match request.body {
                RequestBody::Fetch { id } if id == module_id => ResponseBody::Blob(module.clone()),
                RequestBody::Fetch { id } => match ids.get(&id) {
                    Some(i) => ResponseBody::Blob(input(*i)),
                    None => ResponseBody::NotFound,
                },
                RequestBody::Report(r) => {
                    for t in r.results {
                        outputs.insert(t.index, String::from_utf8_lossy(&t.stdout).into_owned());
                    }
                    ResponseBody::Ack
                }
                _ => ResponseBody::Ack,
            };
            client.respond(channel, Response::new(body)).await;
        }
        outputs
    });
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");

    assert_eq!(outputs.len(), TASKS as usize, "every task ran");
    for (i, out) in &outputs {
        assert!(
            out.starts_with(&format!("{INPUT_BYTES} ")),
            "task {i} read its whole input: {out:?}"
        );
    }
    let peak_mib = peak.load(Ordering::Relaxed) / 1024;
    // Sent 1.5 GiB of inputs; the provider holds at most its blob cache (64 MiB) plus the
    // inputs of the tasks about to run (slot + 2), plus itself.
    assert!(
        peak_mib < 400,
        "the provider's memory peaked at {peak_mib} MiB for {} MiB of inputs",
        (TASKS as usize * INPUT_BYTES) >> 20
    );
    eprintln!(
        "provider peak RSS {peak_mib} MiB for {} MiB of queued inputs",
        (TASKS as usize * INPUT_BYTES) >> 20
    );
}

/// A priced provider (its owner's `min_price` > 0) runs nothing for a peer that did not
/// solicit its ask for the job: not an `Assign` out of the blue, not after an unpaid
/// `Hello`, and not for another job than the one it bid on.
#[test]
fn a_priced_provider_runs_nothing_it_made_no_ask_for() {
    let s = Scratch::new();
    let home = s.path().join("priced");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(
        home.join("policy.toml"),
        "idle_only = false\nmin_price = 1\n",
    )
    .expect("policy");
    let mut c = common::naac();
    c.env("NAAC_HOME", &home).args([
        "node",
        "--provide",
        "--no-mdns",
        "--slots",
        "1",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    let (mut child, addr) = spawn_node(c);
    let addr: Multiaddr = addr.parse().expect("address");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (client, _events, peer) = adversary(addr).await;
        let job = JobId::derive(&ContentId::of(b"unpaid"), b"1");
        let assign = |job: JobId| Assign {
            job,
            seq: 1,
            module: ContentId::of(b"whatever"),
            argv0: "x".into(),
            limits: Limits::default(),
            checkpoint_interval_ms: None,
            order: None,
            sources: Vec::new(),
            hold_over: None,
            holders: Vec::new(),
            inline: Vec::new(),
            reply_with_results: false,
            tasks: vec![TaskSpec {
                index: 0,
                attempt: 0,
                args: Vec::new(),
                stdin: None,
                inputs: Vec::new(),
                seed: ContentId::of(b"s"),
                resume: None,
                env: Vec::new(),
            }],
        };
        let send = |body: RequestBody| {
            let client = client.clone();
            async move {
                client
                    .request(peer, Request::new(body))
                    .await
                    .expect("an answer")
                    .body
            }
        };
        // Out of the blue.
        let r = send(RequestBody::Assign(assign(job))).await;
        let ResponseBody::Refused(why) = r else {
            panic!("ran unpaid work: {r:?}")
        };
        assert!(why.contains("made you no ask for job"), "{why}");
        // An unpaid Hello is refused, and the Assign after it too.
        let hello = naac_proto::Hello {
            pass: None,
            user: None,
            solicit: None,
        };
        let r = send(RequestBody::Hello(hello)).await;
        assert!(
            matches!(&r, ResponseBody::Refused(w) if w.contains("works only for pay")),
            "{r:?}"
        );
        let r = send(RequestBody::Assign(assign(job))).await;
        assert!(matches!(r, ResponseBody::Refused(_)), "{r:?}");
        // A paid Hello gets an ask for that job; another job is still refused.
        let hello = naac_proto::Hello {
            pass: None,
            user: None,
            solicit: Some(naac_proto::Solicit {
                job,
                max_price: naac_types::Price::whole(10),
                fuel: 1_000_000,
                bank: None,
            }),
        };
        let r = send(RequestBody::Hello(hello)).await;
        let ResponseBody::Welcome(w) = r else {
            panic!("no welcome: {r:?}")
        };
        assert!(
            matches!(w.bid, Some(naac_proto::Bid::Ask(_))),
            "{:?}",
            w.bid
        );
        let other = JobId::derive(&ContentId::of(b"other"), b"1");
        let r = send(RequestBody::Assign(assign(other))).await;
        assert!(matches!(r, ResponseBody::Refused(_)), "{r:?}");
        let r = send(RequestBody::Assign(assign(job))).await;
        assert!(
            matches!(r, ResponseBody::Ack),
            "the job it bid on is taken: {r:?}"
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}

/// One task of `job` (index `index`) with `args`.
fn spec(index: u32, args: &[&str]) -> TaskSpec {
    TaskSpec {
        index,
        attempt: 0,
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: None,
        inputs: Vec::new(),
        seed: ContentId::of(&index.to_le_bytes()),
        resume: None,
        env: Vec::new(),
    }
}

/// Compiling a module is work: a provider whose one slot is busy fetches and compiles the
/// module of a new assignment only once the slot is free, not as the `Assign` arrives.
#[test]
fn a_module_is_compiled_only_when_a_slot_is_free() {
    let s = Scratch::new();
    let provider = Provider::start(&s, 1);
    let addr: Multiaddr = provider.addr.parse().expect("the provider's address");
    let testkit = std::fs::read(common::examples().join("testkit/testkit.wasm")).expect("testkit");
    let pi = std::fs::read(common::examples().join("pi/pi.wasm")).expect("pi");
    let (testkit_id, pi_id) = (ContentId::of(&testkit), ContentId::of(&pi));
    const BUSY_MS: u64 = 4000;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (client, mut events, peer) = adversary(addr).await;
        let assign = |name: &[u8], module, args: &[&str], timeout_ms| Assign {
            job: JobId::derive(&ContentId::of(name), b"1"),
            seq: 1,
            module,
            argv0: "x".into(),
            limits: Limits {
                timeout_ms,
                ..Limits::default()
            },
            checkpoint_interval_ms: None,
            tasks: vec![spec(0, args)],
            order: None,
            sources: Vec::new(),
            hold_over: None,
            holders: Vec::new(),
            inline: Vec::new(),
            reply_with_results: false,
        };
        let send = |a: Assign| {
            let client = client.clone();
            tokio::spawn(async move {
                let r = client
                    .request(peer, Request::new(RequestBody::Assign(a)))
                    .await;
                assert!(
                    matches!(
                        &r,
                        Ok(Response {
                            body: ResponseBody::Ack,
                            ..
                        })
                    ),
                    "{r:?}"
                );
            });
        };
        // A warm-up task compiles testkit; then A, a guest that spins until its time limit,
        // takes the one slot at once, and B comes while it runs.
        send(assign(b"warm", testkit_id, &["noop"], 60_000));
        let mut b_sent = None;
        let mut pi_fetched = None;
        let mut pi_result = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        while pi_result.is_none() && Instant::now() < deadline {
            let Ok(Some(ev)) =
                tokio::time::timeout(Duration::from_millis(200), events.recv()).await
            else {
                continue;
            };
            let Event::Request {
                request, channel, ..
            } = ev
            else {
                continue;
            };
            let body = match request.body {
                RequestBody::Fetch { id } if id == testkit_id => {
                    ResponseBody::Blob(testkit.clone())
                }
                RequestBody::Fetch { id } if id == pi_id => {
                    pi_fetched.get_or_insert_with(Instant::now);
                    ResponseBody::Blob(pi.clone())
                }
                RequestBody::Report(r) => {
                    if r.job == JobId::derive(&ContentId::of(b"warm"), b"1")
                        && !r.results.is_empty()
                        && b_sent.is_none()
                    {
                        send(assign(b"busy", testkit_id, &["loop"], BUSY_MS));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        send(assign(b"next", pi_id, &["3", "1000"], 60_000));
                        b_sent = Some(Instant::now());
                    }
                    if r.job == JobId::derive(&ContentId::of(b"next"), b"1") {
                        pi_result = pi_result.or(r.results.into_iter().next());
                    }
                    ResponseBody::Ack
                }
                _ => ResponseBody::Ack,
            };
            client.respond(channel, Response::new(body)).await;
        }
        let r = pi_result.expect("the second assignment ran");
        assert_eq!(r.outcome, Some(naac_types::Outcome::Ok), "{}", r.message);
        let waited = pi_fetched.expect("pi fetched") - b_sent.expect("B sent");
        eprintln!("the second module was fetched {waited:?} after its Assign");
        // A holds the slot for its whole time limit after B is sent: B's module waits.
        assert!(
            waited >= Duration::from_millis(BUSY_MS / 2),
            "fetched for compiling {waited:?} after the Assign, while the slot was busy"
        );
    });
}

/// A requester that floods a provider with jobs and tasks gets at most its share: new jobs
/// past the limit are refused, tasks past it go back unstarted, and a second, honest
/// requester's job runs meanwhile.
#[test]
fn a_requester_gets_at_most_its_share_of_a_provider() {
    use naac_node::provider::admission::{MAX_JOBS_PER_PEER, MAX_TASKS_PER_PEER};
    let s = Scratch::new();
    let provider = Provider::start(&s, 2);
    let addr: Multiaddr = provider.addr.parse().expect("the provider's address");
    // A module the flood never delivers: its tasks wait for it, holding one slot's fetch.
    let never = ContentId::of(b"a module the adversary never sends");
    let job = |i: usize| JobId::derive(&ContentId::of(b"share flood"), &i.to_le_bytes());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (client, mut events, peer) = rt.block_on(adversary(addr));
    let send = |a: Assign| {
        let client = client.clone();
        rt.block_on(async move {
            client
                .request(peer, Request::new(RequestBody::Assign(a)))
                .await
                .expect("an answer")
                .body
        })
    };
    let assign = |j: usize, first: u32, n: u32| Assign {
        job: job(j),
        seq: 1,
        module: never,
        argv0: "x".into(),
        limits: Limits::default(),
        checkpoint_interval_ms: None,
        order: None,
        sources: Vec::new(),
        hold_over: None,
        holders: Vec::new(),
        inline: Vec::new(),
        reply_with_results: false,
        tasks: (first..first + n).map(|i| spec(i, &["noop"])).collect(),
    };
    // Jobs: one task each, four more than the limit.
    let mut refused_jobs = 0;
    for j in 0..MAX_JOBS_PER_PEER + 4 {
        match send(assign(j, 0, 1)) {
            ResponseBody::Ack => assert!(j < MAX_JOBS_PER_PEER, "job {j} taken"),
            ResponseBody::Refused(why) => {
                assert!(why.contains("jobs on this node"), "{why}");
                refused_jobs += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refused_jobs, 4);
    // Tasks: three full assignments to job 0 (12,288 tasks more).
    let mut answers = Vec::new();
    for k in 0..3u32 {
        answers.push(send(assign(0, 1 + k * 4096, 4096)));
    }
    assert!(matches!(answers[0], ResponseBody::Ack), "{:?}", answers[0]);
    assert!(matches!(answers[1], ResponseBody::Ack), "{:?}", answers[1]);
    assert!(
        matches!(&answers[2], ResponseBody::Refused(w) if w.contains("tasks on this node")),
        "{:?}",
        answers[2]
    );

    // An honest requester meanwhile.
    let honest = {
        let job = s.job(
            "honest",
            "testkit/testkit.wasm",
            "args = [\"print\", \"served\"]\n",
        );
        let mut c = s.run_cmd(&job, &s.path().join("out-honest"));
        c.args(["--join", &provider.addr, "--no-mdns"]);
        std::thread::spawn(move || c.output().expect("run naac"))
    };
    // What the provider says it holds for the flood (heartbeats every 2 s), while fetches
    // of the module hang unanswered.
    let mut stalled = Vec::new();
    let mut held: HashMap<JobId, usize> = HashMap::new();
    let mut returned = 0;
    let out = rt.block_on(async {
        let until = Instant::now() + Duration::from_secs(90);
        let mut finished_at: Option<Instant> = None;
        while Instant::now() < until {
            if finished_at.is_none() && honest.is_finished() {
                finished_at = Some(Instant::now());
            }
            // Two more heartbeats after the honest run ended.
            if finished_at.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
                break;
            }
            let Ok(Some(ev)) =
                tokio::time::timeout(Duration::from_millis(200), events.recv()).await
            else {
                continue;
            };
            let Event::Request {
                request, channel, ..
            } = ev
            else {
                continue;
            };
            match request.body {
                RequestBody::Fetch { .. } => stalled.push(channel),
                RequestBody::Report(r) => {
                    held.insert(r.job, r.held.len());
                    returned += r.returned.len();
                    client
                        .respond(channel, Response::new(ResponseBody::Ack))
                        .await;
                }
                _ => {
                    client
                        .respond(channel, Response::new(ResponseBody::Ack))
                        .await
                }
            }
        }
        honest.join().expect("honest run")
    });
    assert!(
        out.status.success(),
        "the honest job ran: {}",
        common::stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(s.path().join("out-honest/tasks/0/stdout")).expect("stdout"),
        "served\n"
    );
    let total: usize = held.values().sum();
    eprintln!(
        "the flood holds {total} tasks in {} jobs; {returned} went back",
        held.len()
    );
    assert!(held.len() <= MAX_JOBS_PER_PEER, "{} jobs held", held.len());
    assert!(total <= MAX_TASKS_PER_PEER, "{total} tasks held");
    assert!(returned > 0, "the excess went back");
    drop(stalled);
}

/// A provider paid at a bank runs a job's work only while that bank shows the job's escrow,
/// funded by the user the requester's Hello names, pays for it: not with no escrow, not with
/// too little in it, and at once when it is topped up. It does not bid for an escrow at
/// another bank.
#[test]
fn a_provider_paid_at_a_bank_runs_work_only_its_escrow_there_pays_for() {
    let s = Scratch::new();
    let bank_home = s.path().join("bank");
    std::fs::create_dir_all(&bank_home).expect("home");
    let mut c = common::naac();
    c.env("NAAC_HOME", &bank_home).args([
        "node",
        "--bank",
        "--no-mdns",
        "--faucet",
        "1",
        "--faucet-rate",
        "1000/h",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    let (mut bank_node, bank_addr) = spawn_node(c);
    let home = s.path().join("paid");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(home.join("policy.toml"), "idle_only = false\n").expect("policy");
    let mut c = common::naac();
    c.env("NAAC_HOME", &home).args([
        "node",
        "--provide",
        "--no-mdns",
        "--slots",
        "1",
        "--price",
        "0.1",
        "--paid-at",
        &bank_addr,
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    let (mut child, addr) = spawn_node(c);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (client, mut events, peer) = adversary(addr.parse().expect("address")).await;
        let bank = naac_node::pay::BankConn::connect(&client, &bank_addr.parse().expect("bank"))
            .await
            .expect("the bank");
        let bank_key = bank.key().await.expect("bank key");
        let user = Keypair::generate_ed25519();
        let job = JobId::derive(&ContentId::of(b"paid at a bank"), b"1");
        let fuel = 1_000_000;
        let mut hello = naac_node::survey::hello(&client, Some(&user));
        let solicit = |bank: [u8; 32]| naac_proto::Solicit {
            job,
            max_price: naac_types::Price::whole(1),
            fuel,
            bank: Some(naac_proto::AccountKey(bank)),
        };
        let send = |body: RequestBody| {
            let client = client.clone();
            async move {
                client
                    .request(peer, Request::new(body))
                    .await
                    .expect("an answer")
                    .body
            }
        };
        // An escrow at another bank: no bid.
        hello.solicit = Some(solicit([9; 32]));
        let ResponseBody::Welcome(w) = send(RequestBody::Hello(hello.clone())).await else {
            panic!("no welcome")
        };
        assert!(
            matches!(&w.bid, Some(naac_proto::Bid::NoBid(why)) if why.contains("paid only at bank")),
            "{:?}",
            w.bid
        );
        hello.solicit = Some(solicit(bank_key.0));
        let ResponseBody::Welcome(w) = send(RequestBody::Hello(hello)).await else {
            panic!("no welcome")
        };
        assert!(matches!(w.bid, Some(naac_proto::Bid::Ask(_))), "{:?}", w.bid);
        let mut seq = 0;
        let me = naac_ledger::AccountKey(
            naac_net::ed25519_of(&peer).expect("the provider's key"),
        );
        // The payer's order for one run, signed by `by`.
        let order = |index: u32, by: &Keypair| {
            let o = naac_ledger::Order::new(
                bank_key,
                job,
                me,
                naac_types::Price::whole(1),
                &[(index, 1)],
            )
            .sign(|m| naac_net::sign(by, m));
            Some(naac_proto::WireOrder {
                bytes: o.bytes,
                sig: o.sig,
            })
        };
        let mut assign = |index: u32, order: Option<naac_proto::WireOrder>| {
            seq += 1;
            Assign {
                job,
                seq,
                module: ContentId::of(b"the module"),
                argv0: "x".into(),
                limits: Limits {
                    fuel,
                    ..Limits::default()
                },
                checkpoint_interval_ms: None,
                tasks: vec![TaskSpec {
                    index,
                    attempt: 1,
                    args: Vec::new(),
                    stdin: None,
                    inputs: Vec::new(),
                    seed: ContentId::of(b"s"),
                    resume: None,
                    env: Vec::new(),
                }],
                order,
                sources: Vec::new(),
                hold_over: None,
                holders: Vec::new(),
                inline: Vec::new(),
                reply_with_results: false,
            }
        };
        // Until the bank answers, and once more after a check fails, the work goes back
        // unstarted; then the refusal is believed.
        let refused = |why: &'static str| {
            let send = &send;
            async move |a: Assign| -> String {
                let t = Instant::now();
                loop {
                    match send(RequestBody::Assign(a.clone())).await {
                        ResponseBody::Refused(w) => return w,
                        ResponseBody::Ack => {
                            assert!(
                                t.elapsed() < Duration::from_secs(10),
                                "never refused ({why})"
                            );
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        };
        let why = refused("no escrow")(assign(0, order(0, &user))).await;
        assert!(why.contains("has no escrow at the bank"), "{why}");
        // An escrow with less than one task's worst case at this host's ask (0.1 per
        // giga-fuel × 1,000,000 fuel = 100 µcredits), and a claim window.
        let escrow = naac_node::pay::open_escrow(
            bank.clone(),
            &user,
            job,
            naac_types::Credits(50),
            (naac_types::Price::whole(1), fuel),
            (Duration::from_secs(120), None),
        )
        .await
        .expect("escrow");
        // An order the payer never committed at the bank reserves nothing for this host.
        let why = refused("not committed")(assign(1, order(1, &user))).await;
        assert!(why.contains("reserves 0 credits for this host"), "{why}");
        // Nor can the escrow (50 µcredits) reserve one task's worst case (1 credit per
        // giga-fuel × 1,000,000 fuel = 1,000 µcredits).
        let commit = |index: u32| {
            let bank = bank.clone();
            let req = naac_ledger::Request::Commit {
                job,
                order: {
                    let w = order(index, &user).expect("order");
                    naac_ledger::SignedOrder {
                        bytes: w.bytes,
                        sig: w.sig,
                    }
                },
            };
            let signed = naac_ledger::SignedRequest::new(escrow.payer, &bank_key, &req, |m| {
                naac_net::sign(&user, m)
            });
            async move { bank.submit(vec![signed]).await.expect("bank").pop().expect("answer") }
        };
        let short = commit(1).await.expect_err("too little to reserve");
        assert!(short.contains("escrow has 0.00005 left"), "{short}");
        // Topped up, a committed order's task runs (the provider fetches its module)…
        naac_node::pay::top_up(&escrow, &user, naac_types::Credits(100_000), 1)
            .await
            .expect("top-up");
        // Room for this host's tasks in flight here: an order of 20 other runs, committed.
        // (Work handed back unstarted counts until this client answers its reports, which
        // it never does.)
        let spare: Vec<(u32, u32)> = (100..120).map(|i| (i, 1)).collect();
        let room = naac_ledger::Order::new(bank_key, job, me, naac_types::Price::whole(1), &spare)
            .sign(|m| naac_net::sign(&user, m));
        let signed = naac_ledger::SignedRequest::new(
            escrow.payer,
            &bank_key,
            &naac_ledger::Request::Commit { job, order: room },
            |m| naac_net::sign(&user, m),
        );
        bank.submit(vec![signed]).await.expect("bank").pop().expect("answer").expect("room");
        // …but not without the payer's order for it, nor with one the requester made up
        // with another key, nor with one for another run: the provider could not claim.
        let why = refused("no order")(assign(2, None)).await;
        assert!(why.contains("needs the payer's signed order"), "{why}");
        let forger = Keypair::generate_ed25519();
        let why = refused("forged order")(assign(3, order(3, &forger))).await;
        assert!(why.contains("is not signed by the escrow's payer"), "{why}");
        let why = refused("another run")(assign(4, order(5, &user))).await;
        assert!(why.contains("does not list the assigned runs"), "{why}");
        let t = Instant::now();
        let mut index = 6;
        loop {
            commit(index).await.expect("committed");
            let r = send(RequestBody::Assign(assign(index, order(index, &user)))).await;
            assert!(!matches!(r, ResponseBody::Refused(_)), "{r:?}");
            let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            let fetched = loop {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(Some(Event::Request {
                        request:
                            Request {
                                body: RequestBody::Fetch { .. },
                                ..
                            },
                        ..
                    })) => break true,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break false,
                }
            };
            if fetched {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "never ran");
            index += 1;
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = bank_node.kill();
    let _ = bank_node.wait();
}

/// A requester that names a stored file as the source of an input it is not: the provider
/// reads the file from its storage hosts, finds another hash, and runs nothing on it.
#[test]
fn a_stored_source_that_is_not_the_blob_named_is_refused() {
    let s = Scratch::new();
    // A storage host, and a provider in its pool.
    let node = |name: &str, role: &str, join: Option<&str>| {
        let home = s.path().join(name);
        std::fs::create_dir_all(&home).expect("home");
        std::fs::write(home.join("policy.toml"), "idle_only = false\n").expect("policy");
        let mut c = common::naac();
        c.env("NAAC_HOME", &home).args([
            "node",
            role,
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ]);
        if let Some(j) = join {
            c.args(["--join", j]);
        }
        spawn_node(c)
    };
    let (mut store_host, store_addr) = node("store", "--store", None);
    let (mut child, addr) = node("provider", "--provide", Some(&store_addr));
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::write(s.path().join("real.bin"), b"the bytes that are stored").expect("file");
    let put = s
        .cmd()
        .args([
            "store", "put", "real.bin", "--k", "1", "--n", "2", "--happy", "1",
        ])
        .arg("--no-mdns")
        .args(["--join", &store_addr])
        .output()
        .expect("put");
    assert!(put.status.success(), "{}", common::stderr(&put));
    let url = String::from_utf8_lossy(&put.stdout).trim().to_string();
    let manifest = ContentId::from_hex(url.trim_start_matches("naac://")).expect("a manifest id");
    let module = std::fs::read(common::examples().join("testkit/testkit.wasm")).expect("testkit");
    let module_id = ContentId::of(&module);
    let claimed = ContentId::of(b"what the requester claims the input is");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let result = rt.block_on(async {
        let (client, mut events, peer) = adversary(addr.parse().expect("address")).await;
        let assign = Assign {
            job: JobId::derive(&ContentId::of(b"lying source"), b"1"),
            seq: 1,
            module: module_id,
            argv0: "liar".into(),
            limits: Limits::default(),
            checkpoint_interval_ms: None,
            order: None,
            sources: vec![naac_proto::BlobSource {
                id: claimed,
                manifest,
                path: "real.bin".into(),
                hosts: Vec::new(),
                token: None,
            }],
            hold_over: None,
            holders: Vec::new(),
            inline: Vec::new(),
            reply_with_results: false,
            tasks: vec![TaskSpec {
                index: 0,
                attempt: 0,
                args: vec!["readin".into(), "data".into()],
                stdin: None,
                inputs: vec![("data".into(), claimed)],
                seed: ContentId::of(b"s"),
                resume: None,
                env: Vec::new(),
            }],
        };
        let client2 = client.clone();
        tokio::spawn(async move {
            let _ = client2
                .request(peer, Request::new(RequestBody::Assign(assign)))
                .await;
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await
            else {
                continue;
            };
            let Event::Request {
                request, channel, ..
            } = ev
            else {
                continue;
            };
            let (body, done) = match request.body {
                RequestBody::Fetch { id } if id == module_id => {
                    (ResponseBody::Blob(module.clone()), None)
                }
                // The input must come from the store, not from here.
                RequestBody::Fetch { id } => panic!("the provider asked the requester for {id:?}"),
                RequestBody::Report(r) => (ResponseBody::Ack, r.results.into_iter().next()),
                _ => (ResponseBody::Ack, None),
            };
            client.respond(channel, Response::new(body)).await;
            if done.is_some() {
                return done;
            }
        }
        None
    });
    for c in [&mut child, &mut store_host] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let r = result.expect("a result came back");
    assert!(r.outcome.is_none(), "the task ran: {r:?}");
    assert!(r.message.contains("is not the blob"), "why: {}", r.message);
}

/// A provider that answers every `Assign` with a report of lies (its own tasks' results
/// wrongly signed, and unsigned results for tasks it was never given) has none of them
/// believed: the answer to an assignment is checked exactly as a `Report` request is, and
/// every result of the job comes from the honest provider.
#[test]
fn lies_in_the_answer_to_an_assignment_are_not_believed() {
    let s = Scratch::new();
    let honest = Provider::start(&s, 1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let lies = Arc::new(AtomicU64::new(0));
    let liar = rt.block_on(async {
        let (client, mut events) = naac_net::start(
            Keypair::generate_ed25519(),
            naac_net::Config {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
                mdns: false,
                ..naac_net::Config::default()
            },
        )
        .await
        .expect("the liar's network");
        let addr = loop {
            if let Some(Event::Listening(_)) = events.recv().await
                && let Some(a) = client.listen_addrs().await.into_iter().next()
            {
                break a;
            }
        };
        let lies = lies.clone();
        tokio::spawn(async move {
            let forged = |index: u32, attempt: u32, signature: Vec<u8>| naac_proto::TaskResult {
                index,
                attempt,
                outcome: Some(naac_types::Outcome::Ok),
                exit_code: Some(0),
                message: String::new(),
                fuel_used: 1,
                wall_us: 1,
                stdout: b"42\n".to_vec(),
                stderr: Vec::new(),
                outputs: Vec::new(),
                signature,
                checkpoints: 0,
                resumed: None,
                held: Vec::new(),
            };
            while let Some(ev) = events.recv().await {
                let Event::Request {
                    request, channel, ..
                } = ev
                else {
                    continue;
                };
                let body = match request.body {
                    RequestBody::Hello(_) => ResponseBody::Welcome(Box::new(naac_proto::Welcome {
                        slots: 4,
                        agent: "liar".into(),
                        owner: None,
                        status: naac_proto::HostStatus {
                            slots: 4,
                            ..Default::default()
                        },
                        bid: None,
                        addrs: Vec::new(),
                    })),
                    RequestBody::Assign(a) => {
                        lies.fetch_add(1, Ordering::Relaxed);
                        let mut results: Vec<_> = a
                            .tasks
                            .iter()
                            .map(|t| forged(t.index, t.attempt, vec![7; 64]))
                            .collect();
                        results.extend(
                            (0..20)
                                .flat_map(|i| (0..3).map(move |at| (i, at)))
                                .map(|(i, at)| forged(i, at, Vec::new())),
                        );
                        ResponseBody::Report(Box::new(naac_proto::Report {
                            job: a.job,
                            results,
                            held: Vec::new(),
                            seen_seq: a.seq,
                            returned: Vec::new(),
                        }))
                    }
                    _ => ResponseBody::Ack,
                };
                client.respond(channel, Response::new(body)).await;
            }
        });
        addr.to_string()
    });
    let samples = 20_000u64;
    let job = s.job(
        "lies",
        "testkit/testkit.wasm",
        &format!(
            "args = [\"pi\", \"{{seed}}\", \"{samples}\"]\n[sweep]\nseed = {{ from = 0, to = 20 }}\n"
        ),
    );
    let (out, v) = s.run(
        &job,
        &["--no-mdns", "--join", &liar, "--join", &honest.addr],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 20, "{v:#}");
    assert!(
        lies.load(Ordering::Relaxed) > 0,
        "the liar was never given work, so the test proves nothing: {v:#}"
    );
    for seed in 0..20u64 {
        let got = std::fs::read_to_string(s.path().join(format!("out-lies/tasks/{seed}/stdout")))
            .expect("stdout");
        assert_eq!(
            got.trim(),
            naac_guest::kernels::pi_hits(seed, samples).to_string(),
            "task {seed}"
        );
    }
}

/// A requester admitted by a pool token that greets the provider again without it takes
/// back the tasks still waiting under the token: they cannot outlive the token's say-so (a
/// revocation would not reach a session that no longer shows it).
#[test]
fn a_requester_that_drops_its_token_gets_its_waiting_tasks_back() {
    let s = Scratch::new();
    let (alice_home, bob_home) = (s.path().join("alice"), s.home());
    let (alice, bob) = (common::user_id(&alice_home), common::user_id(&bob_home));
    let provider = common::provider(
        &s,
        "host",
        &format!("idle_only = false\ntrust_tokens_from = [\"{alice}\"]\n"),
        &[],
    );
    let out = s
        .cmd()
        .env("NAAC_HOME", &alice_home)
        .args(["token", "mint", "pool", "--to", &bob])
        .output()
        .expect("mint");
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let bob_key = naac_net::load_or_create_identity(&bob_home.join("user.key")).expect("bob's key");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (client, mut events, peer) = rt.block_on(adversary(provider.addr.parse().expect("addr")));
    let hello = |pass: bool| naac_proto::Hello {
        user: Some(naac_proto::UserAttestation {
            user: naac_net::peer_id_of(&bob_key).to_string(),
            signature: naac_net::sign(
                &bob_key,
                &naac_proto::UserAttestation::signing_bytes(&client.peer_id().to_bytes()),
            ),
        }),
        solicit: None,
        pass: pass.then(|| naac_proto::Pass {
            token: token.clone(),
            job_name: "x".into(),
        }),
    };
    let send = |body: RequestBody| {
        let client = client.clone();
        rt.block_on(async move {
            client
                .request(peer, Request::new(body))
                .await
                .expect("an answer")
                .body
        })
    };
    assert!(matches!(
        send(RequestBody::Hello(hello(true))),
        ResponseBody::Welcome(_)
    ));
    // Three tasks of a module never sent: they wait, admitted by the token.
    let job = JobId::derive(&ContentId::of(b"regreet"), b"1");
    let a = Assign {
        job,
        seq: 1,
        module: ContentId::of(b"a module the requester never sends"),
        argv0: "x".into(),
        limits: Limits::default(),
        checkpoint_interval_ms: None,
        order: None,
        sources: Vec::new(),
        hold_over: None,
        holders: Vec::new(),
        inline: Vec::new(),
        reply_with_results: false,
        tasks: (0..3).map(|i| spec(i, &["noop"])).collect(),
    };
    assert!(matches!(send(RequestBody::Assign(a)), ResponseBody::Ack));
    // The same session greets again, without the token.
    assert!(matches!(
        send(RequestBody::Hello(hello(false))),
        ResponseBody::Welcome(_)
    ));
    let returned = rt.block_on(async {
        let mut returned = 0;
        let until = Instant::now() + Duration::from_secs(10);
        while returned < 3 && Instant::now() < until {
            let Ok(Some(Event::Request {
                request, channel, ..
            })) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await
            else {
                continue;
            };
            if let RequestBody::Report(r) = &request.body {
                returned += r.returned.len();
            }
            let answer = match request.body {
                RequestBody::Fetch { .. } => ResponseBody::NotFound,
                _ => ResponseBody::Ack,
            };
            client.respond(channel, Response::new(answer)).await;
        }
        returned
    });
    assert_eq!(
        returned, 3,
        "the tasks admitted by the dropped token went back"
    );
}
