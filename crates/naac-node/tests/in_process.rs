//! A provider and a requester started in one process through their library entry points,
//! each given its network client, sandbox and shutdown signal, on 127.0.0.1 port 0: a job
//! runs end to end, its results land and are the same as the guest's own reduce expects.

use naac_net::Keypair;
use naac_node::Home;
use naac_node::provider::{self, Deps, ProviderConfig};
use naac_node::requester::{self, Options, Progress};
use naac_sandbox::{Sandbox, SandboxConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

fn loopback() -> naac_net::Config {
    naac_net::Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
        mdns: false,
        ..naac_net::Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_and_a_requester_in_one_process_run_a_job() {
    let dir = tempfile::tempdir().expect("temp dir");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");

    // The provider, with dependencies made for it and passed in.
    let mut config = ProviderConfig::new(Home::at(dir.path().join("provider")), 2, loopback());
    config.owner_policy = false;
    let deps = Deps::start(&config, Keypair::generate_ed25519())
        .await
        .expect("provider deps");
    let provider_id = deps.client.peer_id();
    let (listening_tx, mut listening) = mpsc::channel(8);
    let (stop, stopped) = oneshot::channel::<()>();
    let provider = tokio::spawn(provider::serve(
        config,
        deps,
        Some(listening_tx),
        async move {
            let _ = stopped.await;
        },
    ));
    let addr = tokio::time::timeout(Duration::from_secs(10), listening.recv())
        .await
        .expect("the provider listens")
        .expect("an address");

    // The requester: a job of 6 pi tasks and its reduce step.
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"pi\"\nmodule = {:?}\nargs = [\"{{seed}}\", \"100000\"]\n[sweep]\nseed = {{ from = 0, to = 6 }}\n[reduce]\nargs = [\"reduce\"]\n",
            examples.join("pi/pi.wasm")
        ),
    )
    .expect("write the job file");
    let sandbox = Arc::new(
        Sandbox::start(SandboxConfig::new(dir.path().join("requester-work"))).expect("sandbox"),
    );
    let prepared = requester::prepare(&job, &sandbox).expect("a valid job");
    let (client, events) = naac_net::start(
        Keypair::generate_ed25519(),
        naac_net::Config {
            join: vec![addr],
            ..loopback()
        },
    )
    .await
    .expect("requester network");
    let out = dir.path().join("out");
    let opts = Options {
        out_dir: out.clone(),
        sched: naac_sched::Config::default(),
        provider_wait: Duration::from_secs(30),
        reputation: None,
        user_key: None,
        no_wait: true,
        payment: None,
        keep: Vec::new(),
        store_home: None,
        local: None,
        bidders: None,
        pass: None,
        data_tokens: Vec::new(),
    };
    let (progress, _watch) = watch::channel(Progress::default());
    let finished = tokio::time::timeout(
        Duration::from_secs(120),
        requester::run(
            prepared,
            client,
            events,
            sandbox,
            opts,
            progress,
            std::future::pending(),
        ),
    )
    .await
    .expect("the job finishes in time")
    .expect("the job runs");

    assert!(finished.success(), "{:#?}", finished.summary);
    let s = &finished.summary;
    assert_eq!((s.tasks.total, s.tasks.succeeded), (6, 6));
    assert_eq!(s.providers.len(), 1);
    assert_eq!(s.providers[0].peer_id, provider_id.to_string());
    assert_eq!(s.providers[0].tasks, 6);
    for i in 0..6 {
        let stdout = std::fs::read(out.join("tasks").join(i.to_string()).join("stdout"))
            .expect("each task's stdout is written");
        assert!(!stdout.is_empty());
    }
    let reduced =
        String::from_utf8(finished.reduce_stdout.expect("the reduce step ran")).expect("utf-8");
    assert!(reduced.contains("3.1"), "pi from 600k samples: {reduced}");
    assert!(out.join("summary.json").is_file());

    stop.send(()).expect("the provider is running");
    tokio::time::timeout(Duration::from_secs(10), provider)
        .await
        .expect("the provider stops")
        .expect("no panic")
        .expect("the provider stops cleanly");
}
