//! Pool tokens across real processes: an owner's token lets a user run on a provider whose
//! allow list does not name them, within the token's limits; the wrong holder, a job outside
//! the token's prefix and a stolen token are refused, and `--explain` says which check
//! failed; a holder hands a narrower token on; a revoked token is refused within seconds
//! while the task running under it finishes.

mod common;

use common::{Scratch, provider};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn as_user(s: &Scratch, home: &Path) -> Command {
    let mut c = s.cmd();
    c.env("NAAC_HOME", home);
    c
}

/// A provider policy that serves only holders of `owner`'s pool tokens.
fn trusting(owner: &str) -> String {
    format!("idle_only = false\ntrust_tokens_from = [\"{owner}\"]\n")
}

/// A pool token the user of `owner_home` mints for `holder`, with `limits` flags.
fn mint_pool(s: &Scratch, owner_home: &Path, holder: &str, limits: &[&str]) -> String {
    ok_stdout(
        as_user(s, owner_home)
            .args(["token", "mint", "pool", "--to", holder])
            .args(limits)
            .output()
            .expect("mint"),
    )
}

fn ok_stdout(out: Output) -> String {
    assert!(out.status.success(), "{}", common::stderr(&out));
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// `naac run JOB --explain --json` as the user of `home`, with `extra` flags.
fn explain(s: &Scratch, home: &Path, job: &Path, join: &[&str], extra: &[&str]) -> Value {
    let out = as_user(s, home)
        .arg("run")
        .arg(job)
        .args(["--explain", "--json"])
        .args(join)
        .args(extra)
        .output()
        .expect("explain");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("explain json: {e}: {}", common::stderr(&out)))
}

#[test]
fn an_owners_token_lets_another_user_in_within_its_limits() {
    let s = Scratch::new();
    let (alice_home, bob_home, carol_home) =
        (s.path().join("alice"), s.home(), s.path().join("carol"));
    let (alice, bob, carol) = (
        common::user_id(&alice_home),
        common::user_id(&bob_home),
        common::user_id(&carol_home),
    );
    // Alice's provider serves her and the holders of her tokens only.
    let host = provider(
        &s,
        "host",
        &format!("idle_only = false\nallow = [\"{alice}\"]\ntrust_tokens_from = [\"{alice}\"]\n"),
        &[],
    );
    let join = ["--no-mdns", "--join", host.addr.as_str()];
    let token = mint_pool(&s, &alice_home, &bob, &["--job-name-prefix", "render-"]);
    let file = s.path().join("bob.token");
    std::fs::write(&file, &token).expect("token file");
    let file = file.to_str().expect("utf8 path");

    // Read back in plain words.
    let words = ok_stdout(
        as_user(&s, &bob_home)
            .args(["token", "inspect", file])
            .output()
            .expect("inspect"),
    );
    assert!(
        words.contains(&format!("may run work on hosts that trust {alice}")),
        "{words}"
    );
    assert!(words.contains(&format!("held by you ({bob})")), "{words}");
    assert!(
        words.contains("job names beginning with \"render-\""),
        "{words}"
    );

    let render = s.job(
        "render-frames",
        "testkit/testkit.wasm",
        "args = [\"print\", \"{i}\"]\n[sweep]\ni = { from = 0, to = 4 }\n",
    );
    // Without the token bob is not served, and --explain says why.
    let v = explain(&s, &bob_home, &render, &join, &[]);
    assert_eq!(v["usable"], 0, "{v:#}");
    assert!(
        v["ruled_out"]
            .to_string()
            .contains("no token its owner trusts"),
        "{v:#}"
    );
    // With it, he is; the job runs there.
    let v = explain(&s, &bob_home, &render, &join, &["--pool-token", file]);
    assert_eq!(v["usable"], 1, "{v:#}");
    let (out, v) = s.run(&render, &[&join[..], &["--pool-token", file]].concat());
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 4, "{v:#}");

    // A job outside the token's prefix: the failed check is named.
    let other = s.job("other", "testkit/testkit.wasm", "args = [\"noop\"]\n");
    let v = explain(&s, &bob_home, &other, &join, &["--pool-token", file]);
    assert_eq!(v["usable"], 0, "{v:#}");
    assert!(v["ruled_out"].to_string().contains("starts_with"), "{v:#}");

    // Carol with bob's token (stolen): refused, it is bob's.
    let v = explain(&s, &carol_home, &render, &join, &["--pool-token", file]);
    assert_eq!(v["usable"], 0, "{v:#}");
    assert!(
        v["ruled_out"].to_string().contains("held by another user"),
        "{v:#}"
    );
    // Nor can she hand it to herself.
    let out = as_user(&s, &carol_home)
        .args(["token", "attenuate", file, "--to", &carol])
        .output()
        .expect("attenuate");
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("only its holder can hand it on"),
        "{}",
        common::stderr(&out)
    );

    // Bob hands carol a narrower one: render-a… only.
    let handed = ok_stdout(
        as_user(&s, &bob_home)
            .args([
                "token",
                "attenuate",
                file,
                "--to",
                &carol,
                "--job-name-prefix",
                "render-a",
            ])
            .output()
            .expect("delegate"),
    );
    let v = explain(&s, &carol_home, &render, &join, &["--pool-token", &handed]);
    assert_eq!(v["usable"], 0, "render-frames is outside render-a: {v:#}");
    let anim = s.job("render-anim", "testkit/testkit.wasm", "args = [\"noop\"]\n");
    let v = explain(&s, &carol_home, &anim, &join, &["--pool-token", &handed]);
    assert_eq!(v["usable"], 1, "{v:#}");
    // The handed-on token is no longer bob's to use.
    let v = explain(&s, &bob_home, &anim, &join, &["--pool-token", &handed]);
    assert_eq!(v["usable"], 0, "{v:#}");

    // A token of a root the owner does not trust: refused as such.
    let own = ok_stdout(
        as_user(&s, &bob_home)
            .args(["token", "mint", "pool"])
            .output()
            .expect("mint"),
    );
    let v = explain(&s, &bob_home, &render, &join, &["--pool-token", &own]);
    assert_eq!(v["usable"], 0, "{v:#}");
    assert!(
        v["ruled_out"]
            .to_string()
            .contains("not rooted in a key this node trusts"),
        "{v:#}"
    );
}

/// Result dirs of a run so far.
fn results_in(out: &Path) -> usize {
    std::fs::read_dir(out.join("tasks")).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().join("stdout").exists())
            .count()
    })
}

#[test]
fn a_revoked_token_is_refused_within_seconds_while_running_work_finishes() {
    let s = Scratch::new();
    let (alice_home, bob_home) = (s.path().join("alice"), s.home());
    let (alice, bob) = (common::user_id(&alice_home), common::user_id(&bob_home));
    let host = provider(&s, "host", &trusting(&alice), &[]);
    let join = ["--no-mdns", "--join", host.addr.as_str()];
    let token = mint_pool(&s, &alice_home, &bob, &[]);
    let file = s.path().join("bob.token");
    std::fs::write(&file, &token).expect("token file");
    let file = file.to_str().expect("utf8 path");
    let job = s.job(
        "long",
        "testkit/testkit.wasm",
        "args = [\"spin\", \"400\"]\n[sweep]\ni = { from = 0, to = 40 }\n",
    );
    let out = s.path().join("out-long");
    let mut run = s
        .run_cmd(&job, &out)
        .args(join)
        .args(["--pool-token", file])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run");
    let t0 = std::time::Instant::now();
    while results_in(&out) < 2 {
        assert!(t0.elapsed().as_secs() < 60, "the run never got going");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A stranger cannot revoke bob's token; alice can.
    let carol_home = s.path().join("carol");
    let denied = as_user(&s, &carol_home)
        .args(["token", "revoke", file])
        .args(join)
        .output()
        .expect("revoke");
    assert!(!denied.status.success());
    assert!(
        common::stderr(&denied).contains("may revoke"),
        "{}",
        common::stderr(&denied)
    );
    // A stranger floods the topic with revocations of her own tokens: the provider keeps
    // none of them (it trusts only alice's root), and bob's token still works.
    let eve_home = s.path().join("eve");
    for _ in 0..3 {
        let own = ok_stdout(
            as_user(&s, &eve_home)
                .args(["token", "mint", "pool"])
                .output()
                .expect("mint"),
        );
        let out = as_user(&s, &eve_home)
            .args(["token", "revoke", &own, "--linger", "0s"])
            .args(join)
            .output()
            .expect("revoke");
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    let revoked_at = std::time::Instant::now();
    let out_revoke = as_user(&s, &alice_home)
        .args(["token", "revoke", file, "--block", "0", "--linger", "1s"])
        .args(join)
        .output()
        .expect("revoke");
    assert!(
        out_revoke.status.success(),
        "{}",
        common::stderr(&out_revoke)
    );
    // Refused everywhere in view within 10 s: --explain says so.
    loop {
        let v = explain(&s, &bob_home, &job, &join, &["--pool-token", file]);
        if v["usable"] == 0 && v["ruled_out"].to_string().contains("revoked") {
            break;
        }
        assert!(revoked_at.elapsed().as_secs() < 10, "still usable: {v:#}");
    }
    eprintln!(
        "refused {:?} after the revocation was published",
        revoked_at.elapsed()
    );
    // No new task starts: at most the one running finishes.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let n1 = results_in(&out);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let n2 = results_in(&out);
    assert!(
        n2 <= n1 + 1,
        "tasks kept running after the revocation: {n1} -> {n2}"
    );
    assert!(n2 < 40, "the whole job ran");
    let _ = run.kill();
    let _ = run.wait();
    // The provider keeps alice's, and only hers, across a restart (revoked.jsonl).
    let kept = std::fs::read_to_string(host.home.join("revoked.jsonl")).expect("revoked.jsonl");
    assert_eq!(kept.lines().count(), 1, "eve's were kept too: {kept}");
}

#[test]
fn a_tokens_slot_limit_holds_on_a_provider_with_more_slots() {
    let s = Scratch::new();
    let (alice_home, bob_home) = (s.path().join("alice"), s.home());
    let (alice, bob) = (common::user_id(&alice_home), common::user_id(&bob_home));
    // A two-slot provider (`provider` makes one-slot ones).
    let home = s.path().join("host");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(home.join("policy.toml"), trusting(&alice)).expect("policy");
    let mut c = common::naac();
    c.env("NAAC_HOME", &home)
        .args(["node", "--provide", "--no-mdns", "--slots", "2"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let (mut child, addr) = common::spawn_node(c);
    let token = mint_pool(&s, &alice_home, &bob, &["--slots", "1"]);
    let job = s.job(
        "serial",
        "testkit/testkit.wasm",
        "args = [\"spin\", \"400\"]\n[sweep]\ni = { from = 0, to = 4 }\n",
    );
    let (out, v) = s.run(
        &job,
        &["--no-mdns", "--join", &addr, "--pool-token", &token],
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(v["tasks"]["succeeded"], 4, "{v:#}");
    // One at a time: each result comes a task's run time after the one before (two slots
    // would deliver them in pairs).
    let lines = std::fs::read_to_string(s.path().join("out-serial/tasks.jsonl")).expect("tasks");
    let mut rows: Vec<(u64, f64)> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("line"))
        .map(|l| {
            (
                l["accepted_ms"].as_u64().expect("accepted_ms"),
                l["wall_ms"].as_f64().expect("wall_ms"),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    for w in rows.windows(2) {
        assert!(
            (w[1].0 - w[0].0) as f64 >= 0.5 * w[1].1,
            "two tasks ran at once under a one-slot token: {rows:?}"
        );
    }
}

#[test]
fn a_job_submitted_to_the_daemon_runs_under_its_pool_token() {
    let s = Scratch::new();
    let (alice_home, bob_home) = (s.path().join("alice"), s.home());
    let (alice, bob) = (common::user_id(&alice_home), common::user_id(&bob_home));
    let host = provider(&s, "host", &trusting(&alice), &[]);
    let token = mint_pool(&s, &alice_home, &bob, &[]);
    let api = format!("127.0.0.1:{}", common::free_port());
    let mut daemon = common::requester_node(&s, &api, &["--join", &host.addr]);
    let job = s.job(
        "queued",
        "testkit/testkit.wasm",
        "args = [\"print\", \"{i}\"]\n[sweep]\ni = { from = 0, to = 3 }\n",
    );
    let submit = |extra: &[&str]| -> Value {
        let out = s
            .cmd()
            .args(["submit", "--json", "--api", &api])
            .args(extra)
            .arg(&job)
            .output()
            .expect("submit");
        assert!(out.status.success(), "{}", common::stderr(&out));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let wait = |id: &str| -> Value {
        let out = s
            .cmd()
            .args(["status", id, "--watch", "--json", "--api", &api])
            .output()
            .expect("status");
        serde_json::from_slice(&out.stdout).expect("status json")
    };
    let id = submit(&["--pool-token", &token])["id"]
        .as_str()
        .expect("id")
        .to_string();
    let done = wait(&id);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(done["state"], "done", "{done:#}");
    assert_eq!(done["summary"]["tasks"]["succeeded"], 3, "{done:#}");
    // The token stays with the job, readable by the node's user only.
    let kept = std::fs::read_dir(s.home().join("jobs"))
        .expect("jobs dir")
        .filter_map(Result::ok)
        .map(|e| e.path().join("pool.token"))
        .find(|p| p.exists())
        .expect("the job's pool.token");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&kept).expect("meta").permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}
