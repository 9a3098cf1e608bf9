//! Submit and walk away: a requester node (`naac node`, no role) with its HTTP API on a
//! free loopback port, jobs handed to it with `naac submit`, followed with `naac status`,
//! cancelled, and run to the end across a `kill -9` of the node. Also the API's refusals:
//! no token, a wrong token, a job naming a file it did not bring.

mod common;

use common::{Provider, Scratch, free_port, stderr};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::Child;
use std::time::{Duration, Instant};

/// A requester node with its API on `api`; killed when dropped.
struct Daemon(Child);

impl Daemon {
    fn start(s: &Scratch, api: &str) -> Daemon {
        Daemon::start_with(s, api, &[])
    }

    /// With `extra` `naac node` flags.
    fn start_with(s: &Scratch, api: &str, extra: &[&str]) -> Daemon {
        Daemon(common::requester_node(s, api, extra))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// `naac submit --json JOB` against `api`.
fn submit(s: &Scratch, api: &str, job: &std::path::Path) -> std::process::Output {
    s.cmd()
        .args(["submit", "--json", "--api", api])
        .arg(job)
        .output()
        .expect("naac submit")
}

/// Submits `job`, which must be accepted; its id.
fn submit_id(s: &Scratch, api: &str, job: &std::path::Path) -> String {
    let v = json(&submit(s, api, job));
    v["id"].as_str().expect("id").to_string()
}

/// `naac status ID --json`.
fn status(s: &Scratch, api: &str, id: &str) -> Value {
    json(
        &s.cmd()
            .args(["status", id, "--json", "--api", api])
            .output()
            .expect("naac status"),
    )
}

/// Follows a job until it ends; its last view.
fn wait_for(s: &Scratch, api: &str, id: &str) -> Value {
    let out = s
        .cmd()
        .args(["status", id, "--watch", "--json", "--api", api])
        .output()
        .expect("naac status");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)))
}

#[test]
fn a_submitted_job_runs_on_the_node_and_its_results_are_fetched() {
    let s = Scratch::new();
    let api = format!("127.0.0.1:{}", free_port());
    let _d = Daemon::start(&s, &api);
    let job = s.job(
        "quick",
        "pi/pi.wasm",
        "args = [\"{seed}\", \"100000\"]\n[sweep]\nseed = { from = 0, to = 6 }\n",
    );
    let v = json(&submit(&s, &api, &job));
    assert_eq!(v["state"], "queued", "{v:#}");
    let id = v["id"].as_str().expect("id").to_string();
    let done = wait_for(&s, &api, &id);
    assert_eq!(done["state"], "done", "{done:#}");
    assert_eq!(done["summary"]["tasks"]["succeeded"], 6, "{done:#}");
    // The list has it; its results copy out with `naac run`'s layout.
    let list = json(
        &s.cmd()
            .args(["jobs", "--json", "--api", &api])
            .output()
            .expect("naac jobs"),
    );
    assert_eq!(list[0]["id"], id.as_str(), "{list:#}");
    // The event stream of a finished job: its final state, then the stream ends.
    let token = std::fs::read_to_string(s.home().join("api.token")).expect("api.token");
    let events = sse(&api, token.trim(), &id);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "state");
    assert_eq!(events[0].1["state"], "done");
    // Its results copy out (the archive, through the API) with `naac run`'s layout.
    let out = s.path().join("copy");
    let r = s
        .cmd()
        .args(["results", &id, "--api", &api, "--out"])
        .arg(&out)
        .output()
        .expect("naac results");
    assert!(r.status.success(), "{}", stderr(&r));
    let stdout =
        std::fs::read_to_string(out.join("tasks").join("5").join("stdout")).expect("stdout");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary.json"))
            .expect("summary");
    assert_eq!(summary["tasks"]["succeeded"], 6);
    // The API serves a task's output; nothing outside its directory.
    let get = |path: &str| {
        http(
            &api,
            format!(
                "GET /v1/jobs/{id}/tasks/{path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                token.trim()
            )
            .as_bytes(),
        )
    };
    assert_eq!(get("5/stdout"), (200, stdout));
    assert_eq!(get("9/stdout").0, 404);
    let (code, body) = get("5/out/..%2F..%2F..%2F..%2Fapi.token");
    assert_eq!(code, 400, "{body}");
}

#[test]
fn a_job_cancelled_while_it_runs_stops_and_the_next_one_runs() {
    let s = Scratch::new();
    let api = format!("127.0.0.1:{}", free_port());
    let _d = Daemon::start(&s, &api);
    let long = s.job(
        "long",
        "testkit/testkit.wasm",
        "args = [\"sha256\", \"{i}\", \"200000000\"]\n[sweep]\ni = { from = 0, to = 64 }\n[limits]\nfuel = 10_000_000_000_000\n",
    );
    let a = submit_id(&s, &api, &long);
    let quick = s.job(
        "quick",
        "pi/pi.wasm",
        "args = [\"{seed}\", \"1000\"]\n[sweep]\nseed = { from = 0, to = 2 }\n",
    );
    let b = submit_id(&s, &api, &quick);
    // A watcher on the long job's events from the start.
    let token = std::fs::read_to_string(s.home().join("api.token")).expect("api.token");
    let watcher = {
        let (api, token, a) = (api.clone(), token.trim().to_string(), a.clone());
        std::thread::spawn(move || sse(&api, &token, &a))
    };
    // Wait until the long one runs (its progress shown), then cancel it.
    let t = Instant::now();
    loop {
        let v = status(&s, &api, &a);
        if v["state"] == "running"
            && v["progress"]["total"] == 64
            && v["progress"]["running"].as_u64() > Some(0)
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = json(
        &s.cmd()
            .args(["cancel", &a, "--json", "--api", &api])
            .output()
            .expect("naac cancel"),
    );
    assert_eq!(c["state"], "cancelled", "{c:#}");
    assert_eq!(wait_for(&s, &api, &b)["state"], "done");
    // Stopped as Ctrl-C stops a run: its summary written, its escrow closed.
    let v = wait_for(&s, &api, &a);
    assert_eq!(v["state"], "cancelled", "{v:#}");
    assert_eq!(v["summary"]["interrupted"], true, "{v:#}");
    assert!(v.get("progress").is_none(), "{v:#}");
    // The watcher saw it running with progress, and cancelled with the summary its run
    // wrote as it stopped; then its stream ended.
    let events = watcher.join().expect("watcher");
    let states: Vec<&str> = events
        .iter()
        .filter(|(k, _)| k == "state")
        .filter_map(|(_, v)| v["state"].as_str())
        .collect();
    assert!(states.contains(&"running"), "{states:?}");
    assert_eq!(states.last(), Some(&"cancelled"), "{states:?}");
    let last = &events.last().expect("events").1;
    assert_eq!(last["summary"]["interrupted"], true, "{last:#}");
    assert!(
        events
            .iter()
            .any(|(k, v)| k == "progress" && v["progress"]["running"].as_u64() > Some(0)),
        "{events:?}"
    );
}

/// Reads job `id`'s event stream to its end: each event's name and data.
fn sse(api: &str, token: &str, id: &str) -> Vec<(String, Value)> {
    // HTTP/1.0: the body is the stream itself, closed at its end.
    let (code, body) = http(
        api,
        format!("GET /v1/jobs/{id}/events HTTP/1.0\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    let mut out = Vec::new();
    let mut name = String::new();
    for line in body.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            out.push((name.clone(), serde_json::from_str(d).expect("event json")));
        }
    }
    out
}

#[test]
fn a_node_killed_mid_job_resumes_it_keeping_results_and_paying_none_twice() {
    let s = Scratch::new();
    let api = format!("127.0.0.1:{}", free_port());
    let mut d = Daemon::start(&s, &api);
    let job = s.job(
        "again",
        "testkit/testkit.wasm",
        "args = [\"sha256\", \"{i}\", \"4000000\"]\n[sweep]\ni = { from = 0, to = 16 }\n[limits]\nfuel = 1_000_000_000_000\n",
    );
    let id = submit_id(&s, &api, &job);
    // Kill it once some results are in and others are not.
    let tasks = s.home().join("jobs").join(&id).join("out").join("tasks");
    let accepted = || std::fs::read_dir(&tasks).map_or(0, |d| d.count());
    let t = Instant::now();
    while accepted() < 3 {
        assert!(t.elapsed() < Duration::from_secs(60), "no results came in");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A watcher from before the kill follows the job across the restart.
    let watcher = s
        .cmd()
        .args(["status", &id, "--watch", "--json", "--api", &api])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("naac status --watch");
    std::thread::sleep(Duration::from_millis(200));
    // SIGKILL: no chance to write anything down.
    let _ = d.0.kill();
    let _ = d.0.wait();
    let before = accepted();
    assert!(
        before < 16,
        "the job ended before the kill: make its tasks longer"
    );
    let _d = Daemon::start(&s, &api);
    let v = wait_for(&s, &api, &id);
    assert_eq!(v["state"], "done", "{v:#}");
    assert_eq!(v["summary"]["tasks"]["succeeded"], 16, "{v:#}");
    // The results accepted before the kill were kept, not run again.
    assert_eq!(v["summary"]["tasks"]["kept"], before as u64, "{v:#}");
    let watched = watcher.wait_with_output().expect("watcher");
    let seen: Value =
        serde_json::from_slice(&watched.stdout).unwrap_or_else(|_| panic!("{}", stderr(&watched)));
    assert_eq!(seen["state"], "done", "{seen:#}");
    // The books hold: the ledger verifies, and no task was paid for twice.
    let verify = s
        .cmd()
        .args(["wallet", "verify", "--json"])
        .output()
        .expect("naac wallet verify");
    assert!(verify.status.success(), "{}", stderr(&verify));
    let db = rusqlite::Connection::open(s.home().join("bank").join("ledger.db")).expect("ledger");
    let twice: Vec<(i64, i64)> = db
        .prepare("SELECT task, COUNT(*) FROM entries WHERE kind = 'settle' GROUP BY task HAVING COUNT(*) > 1")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(twice.is_empty(), "tasks paid more than once: {twice:?}");
    let paid: i64 = db
        .query_row(
            "SELECT COUNT(DISTINCT task) FROM entries WHERE kind = 'settle'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert!(paid >= 16 - before as i64, "{paid} tasks paid");
}

/// One raw HTTP/1.1 exchange; the status code and the body.
fn http(addr: &str, request: &[u8]) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.write_all(request).expect("send");
    let mut resp = String::new();
    c.read_to_string(&mut resp).expect("read");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn the_api_refuses_strangers_and_jobs_that_lack_their_files() {
    let s = Scratch::new();
    let api = format!("127.0.0.1:{}", free_port());
    let _d = Daemon::start(&s, &api);
    let token = std::fs::read_to_string(s.home().join("api.token")).expect("api.token");
    let token = token.trim();
    let get = |auth: &str| {
        http(
            &api,
            format!("GET /v1/jobs HTTP/1.1\r\nHost: {api}\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let (code, body) = get("");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("Bearer"), "{body}");
    let (code, _) = get("Authorization: Bearer 0000\r\n");
    assert_eq!(code, 401);
    let (code, body) = get(&format!("Authorization: Bearer {token}\r\n"));
    assert_eq!((code, body.as_str()), (200, r#"{"jobs":[]}"#));
    // A token of another key: 401.
    let foreign = naac_token::Root::from_ed25519(&[9; 32])
        .and_then(|r| r.mint_admin("elsewhere"))
        .expect("foreign token");
    let (code, body) = get(&format!("Authorization: Bearer {foreign}\r\n"));
    assert_eq!(code, 401, "{body}");
    // A read-only token (attenuated offline by `naac api token`) reads, cannot cancel.
    let narrow = |args: &[&str]| {
        let out = s
            .cmd()
            .args(["api", "token"])
            .args(args)
            .output()
            .expect("naac api token");
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string()
    };
    let read = narrow(&["--scope", "read", "--ttl", "1h"]);
    assert_eq!(get(&format!("Authorization: Bearer {read}\r\n")).0, 200);
    // A submit token limited to jobs named `ci-…`.
    let ci = narrow(&["--scope", "submit", "--job-name-prefix", "ci-"]);
    let as_ci = |job: &std::path::Path| {
        s.cmd()
            .args(["submit", "--json", "--api", &api, "--token", &ci])
            .arg(job)
            .output()
            .expect("naac submit")
    };
    let other = as_ci(&s.job("other", "pi/pi.wasm", "args = [\"1\", \"10\"]\n"));
    assert_eq!(other.status.code(), Some(2), "{}", stderr(&other));
    assert!(stderr(&other).contains("starts_with"), "{}", stderr(&other));
    let mine = as_ci(&s.job("ci-one", "pi/pi.wasm", "args = [\"1\", \"10\"]\n"));
    assert!(mine.status.success(), "{}", stderr(&mine));
    let mine = json(&mine)["id"].as_str().expect("id").to_string();
    // The read-only token cannot cancel it.
    let (code, body) = http(
        &api,
        format!("DELETE /v1/jobs/{mine} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {read}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("operation"), "{body}");
    // The dashboard's login address carries the node's token.
    let url = s
        .cmd()
        .args(["api", "url", "--api", &api])
        .output()
        .expect("naac api url");
    assert_eq!(
        String::from_utf8_lossy(&url.stdout).trim(),
        format!("http://{api}/?token={token}")
    );
    // The OpenAPI document, served by the same router.
    let (code, body) = http(
        &api,
        format!("GET /v1/openapi.json HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).expect("openapi json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/jobs"]["post"].is_object(), "{doc:#}");
    // A job whose module was not sent: 400, naming it.
    let job = "name = \"lacking\"\nmodule = \"pi.wasm\"\nargs = [\"1\", \"10\"]\n";
    let form = format!(
        "--XX\r\nContent-Disposition: form-data; name=\"job\"; filename=\"job.toml\"\r\n\r\n{job}\r\n--XX--\r\n"
    );
    let req = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let (code, body) = http(&api, req.as_bytes());
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("pi.wasm"), "{body}");
    // A browser page elsewhere cannot submit through a logged-in browser.
    let req = format!(
        "DELETE /v1/jobs/x HTTP/1.1\r\nHost: {api}\r\nOrigin: http://evil.example\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(http(&api, req.as_bytes()).0, 403);
    // Nothing was queued by any of it but the `ci-` job.
    let (_, body) = get(&format!("Authorization: Bearer {token}\r\n"));
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["jobs"].as_array().map(Vec::len), Some(1), "{v:#}");
    assert_eq!(v["jobs"][0]["id"], mine.as_str());
}

/// A node that takes at most 3 waiting jobs and 512 KiB per submit: the fifth job in a burst
/// gets 429 with `Retry-After`, an oversized submit 413, and every job accepted is still
/// there, in order.
#[test]
fn a_full_queue_and_an_oversized_submit_are_refused_and_lose_nothing() {
    let s = Scratch::new();
    let api = format!("127.0.0.1:{}", free_port());
    let _d = Daemon::start_with(&s, &api, &["--max-queued", "3", "--max-upload", "512KiB"]);
    // Long enough that the first stays running while the rest queue.
    let long = s.job(
        "long",
        "testkit/testkit.wasm",
        "args = [\"sha256\", \"{i}\", \"200000000\"]\n[sweep]\ni = { from = 0, to = 8 }\n[limits]\nfuel = 10_000_000_000_000\n",
    );
    let id = submit_id(&s, &api, &long);
    let t = Instant::now();
    while status(&s, &api, &id)["state"] != "running" {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the first job never ran"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..3 {
        submit_id(&s, &api, &long);
    }
    let full = submit(&s, &api, &long);
    assert_eq!(full.status.code(), Some(2), "{}", stderr(&full));
    assert!(
        stderr(&full).contains("3 jobs are already waiting"),
        "{}",
        stderr(&full)
    );
    // The raw answer: 429 with Retry-After.
    let token = std::fs::read_to_string(s.home().join("api.token")).expect("token");
    let form =
        "--XX\r\nContent-Disposition: form-data; name=\"job\"\r\n\r\nname = \"x\"\r\n--XX--\r\n";
    let req = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        token.trim(),
        form.len()
    );
    let mut c = std::net::TcpStream::connect(&api).expect("connect");
    c.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    c.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 429"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("retry-after: 30"),
        "{resp}"
    );
    // Over the size limit: 413, said plainly.
    std::fs::write(s.path().join("big.bin"), vec![7u8; 600 << 10]).expect("big");
    let big = s.job(
        "big",
        "pi/pi.wasm",
        "args = [\"1\", \"10\"]\ninputs = [\"big.bin\"]\n",
    );
    let out = submit(&s, &api, &big);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("at most 524288 bytes"),
        "{}",
        stderr(&out)
    );
    // Every job accepted is there: the running one and three waiting.
    let list = json(
        &s.cmd()
            .args(["jobs", "--json", "--api", &api])
            .output()
            .expect("jobs"),
    );
    let states: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|j| j["state"].as_str().expect("state"))
        .collect();
    assert_eq!(
        states,
        ["queued", "queued", "queued", "running"],
        "{list:#}"
    );
}

/// One submit of `job` (TOML) and `module` as raw HTTP; the status code.
fn raw_submit(api: &str, token: &str, job: &str, module: &[u8]) -> u16 {
    raw_submit_as(api, token, job, "pi.wasm", module)
}

fn raw_submit_as(api: &str, token: &str, job: &str, name: &str, module: &[u8]) -> u16 {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--XX\r\nContent-Disposition: form-data; name=\"job\"\r\n\r\n{job}\r\n--XX\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(module);
    body.extend_from_slice(b"\r\n--XX--\r\n");
    let mut req = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    http(api, &req).0
}

/// 1,000 submits in a burst from 4 clients against a queue of 20, while 16 watchers hold
/// event streams open and never read them: every submit is answered `201` or `429`,
/// every job accepted is listed and runs to the end, and `/metrics` counts the streams.
#[test]
fn a_burst_of_submits_and_stalled_watchers_lose_nothing_and_stall_nothing() {
    let s = Scratch::new();
    let api = format!("127.0.0.1:{}", free_port());
    let _d = Daemon::start_with(&s, &api, &["--max-queued", "20"]);
    let token = std::fs::read_to_string(s.home().join("api.token")).expect("token");
    let token = token.trim().to_string();
    let module = std::fs::read(common::examples().join("pi/pi.wasm")).expect("pi.wasm");
    // A long first job, watched while the burst comes in, then cancelled.
    let testkit = std::fs::read(common::examples().join("testkit/testkit.wasm")).expect("testkit");
    let first = raw_submit_as(
        &api,
        &token,
        "name = \"first\"\nmodule = \"testkit.wasm\"\nargs = [\"sha256\", \"{i}\", \"200000000\"]\n[sweep]\ni = { from = 0, to = 8 }\n[limits]\nfuel = 10_000_000_000_000\n",
        "testkit.wasm",
        &testkit,
    );
    assert_eq!(first, 201);
    let page: Value = serde_json::from_str(
        &http(
            &api,
            format!("GET /v1/jobs HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .1,
    )
    .expect("jobs");
    let first_id = page["jobs"][0]["id"].as_str().expect("id").to_string();
    // Watchers that never read.
    let stalled: Vec<std::net::TcpStream> = (0..16)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&api).expect("connect");
            c.write_all(
                format!("GET /v1/jobs/{first_id}/events HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes(),
            )
            .expect("send");
            c
        })
        .collect();
    let burst: Vec<std::thread::JoinHandle<Vec<u16>>> = (0..4)
        .map(|c| {
            let (api, token, module) = (api.clone(), token.clone(), module.clone());
            std::thread::spawn(move || {
                (0..250)
                    .map(|i| {
                        let job = format!(
                            "name = \"burst-{c}-{i}\"\nmodule = \"pi.wasm\"\nargs = [\"{i}\", \"1000\"]\n"
                        );
                        raw_submit(&api, &token, &job, &module)
                    })
                    .collect()
            })
        })
        .collect();
    let codes: Vec<u16> = burst
        .into_iter()
        .flat_map(|h| h.join().expect("client"))
        .collect();
    let accepted = codes.iter().filter(|c| **c == 201).count();
    let refused = codes.iter().filter(|c| **c == 429).count();
    assert_eq!(accepted + refused, 1000, "other answers: {codes:?}");
    assert!(accepted >= 20, "{accepted} accepted");
    assert!(refused > 0, "the queue never filled");
    // The streams are counted while they are open.
    let (_, metrics) = http(
        &api,
        format!("GET /metrics HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let open: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("naac_api_event_streams "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(open, 16, "{metrics}");
    let cancel = s
        .cmd()
        .args(["cancel", &first_id, "--api", &api])
        .output()
        .expect("naac cancel");
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    // Every accepted job is listed, and all run to the end with the watchers still stalled.
    let list = json(
        &s.cmd()
            .args(["jobs", "--json", "--api", &api])
            .output()
            .expect("naac jobs"),
    );
    let jobs = list.as_array().expect("jobs");
    assert_eq!(jobs.len(), accepted + 1);
    let t = Instant::now();
    loop {
        let list = json(
            &s.cmd()
                .args(["jobs", "--json", "--api", &api])
                .output()
                .expect("naac jobs"),
        );
        let states: Vec<&str> = list
            .as_array()
            .expect("jobs")
            .iter()
            .filter_map(|j| j["state"].as_str())
            .collect();
        assert!(!states.contains(&"failed"), "{list:#}");
        if states.iter().all(|s| *s == "done" || *s == "cancelled") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "jobs still not done: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The metrics agree.
    let (_, metrics) = http(
        &api,
        format!("GET /metrics HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert!(
        metrics.contains(&format!("naac_jobs{{state=\"done\"}} {accepted}")),
        "{metrics}"
    );
    // Every job's run opened an escrow at the embedded pool's bank (a signed request
    // submitted), timed.
    let escrows: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("naac_bank_requests_total{kind=\"submit\",outcome=\"ok\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(escrows >= accepted as u64, "{metrics}");
    assert!(
        metrics.contains("naac_bank_request_milliseconds_total{kind=\"submit\"}"),
        "{metrics}"
    );
    drop(stalled);
}

/// Two jobs on a pool joined with `--join` (one provider, 2 slots) run at once and share
/// it: the second starts before the first ends and has done a fair part of its tasks by
/// then, instead of waiting its turn.
#[test]
fn two_jobs_on_a_joined_pool_run_at_once_and_share_it() {
    let s = Scratch::new();
    let provider = Provider::start(&s, 2);
    let api = format!("127.0.0.1:{}", free_port());
    let _d = Daemon::start_with(&s, &api, &["--join", &provider.addr, "--max-running", "2"]);
    let job = |name: &str| {
        s.job(
            name,
            "testkit/testkit.wasm",
            "args = [\"sha256\", \"{i}\", \"2000000\"]\n[sweep]\ni = { from = 0, to = 12 }\n[limits]\nfuel = 1_000_000_000_000\n",
        )
    };
    let a = submit_id(&s, &api, &job("share-a"));
    let b = submit_id(&s, &api, &job("share-b"));
    let va = wait_for(&s, &api, &a);
    assert_eq!(va["state"], "done", "{va:#}");
    let vb = status(&s, &api, &b);
    let ended = va["finished_ms"].as_u64().expect("finished");
    let started = vb["started_ms"].as_u64().expect("b started");
    assert!(started < ended, "b waited for a: {vb:#}");
    let done_b = vb["progress"]["succeeded"]
        .as_u64()
        .or_else(|| vb["summary"]["tasks"]["succeeded"].as_u64())
        .unwrap_or(0);
    assert!(
        done_b >= 3,
        "b had {done_b} of 12 tasks when a ended: {vb:#}"
    );
    assert_eq!(wait_for(&s, &api, &b)["state"], "done");
}

/// A node with a role serves the API too; `GET /v1/node` names its identity, roles and the
/// addresses it listens on.
#[test]
fn a_provider_node_serves_the_api_and_says_where_it_listens() {
    let s = Scratch::new();
    let api = format!("127.0.0.1:{}", free_port());
    let mut c = s.cmd();
    c.args(["node", "--provide", "--no-mdns", "--api", &api])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let (child, addr) = common::spawn_node(c);
    let _node = Daemon(child);
    let token = std::fs::read_to_string(s.home().join("api.token")).expect("token");
    let (code, body) = http(
        &api,
        format!(
            "GET /v1/node HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token.trim()
        )
        .as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["roles"], serde_json::json!(["provider"]), "{v:#}");
    let id = v["id"].as_str().expect("id");
    assert!(addr.ends_with(id), "{addr} is not {id}'s");
    let listed: Vec<&str> = v["addresses"]
        .as_array()
        .expect("addresses")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(listed.contains(&addr.as_str()), "{addr} not in {listed:?}");
}
