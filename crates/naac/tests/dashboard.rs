//! The dashboard in a real browser: headless Chromium driven through ChromeDriver's
//! WebDriver API (`scripts/chromium.sh install` puts both in place). A requester node joined
//! to a provider on 127.0.0.1; the browser opens the login address `naac api url` prints,
//! sees the provider in the pool, submits `examples/pi` from the form, watches it reach
//! `done`, opens a task's stdout, and edits a policy key with a typo and sees the error
//! beside it. Screenshots of each step land in the target directory
//! (`CARGO_TARGET_TMPDIR/dashboard/`).
//!
//! Without chromedriver the test says so and passes, unless `NAAC_REQUIRE_CHROMIUM` is set
//! (as `.ci/run` sets it), when it fails.

mod common;

use common::{Provider, Scratch, examples, free_port, stderr};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A WebDriver session on a ChromeDriver this test started.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver call: its `value`.
fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    // ChromeDriver may keep the connection open: read the head, then Content-Length bytes
    // (or chunks to the final empty one).
    let mut r = BufReader::new(c);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let lower = head.to_ascii_lowercase();
    let body = if let Some(n) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
    {
        let mut buf = vec![0; n];
        r.read_exact(&mut buf).map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&buf).into_owned()
    } else {
        let mut body = String::new();
        loop {
            let mut size = String::new();
            r.read_line(&mut size).map_err(|e| e.to_string())?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            body.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        body
    };
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if v["value"]["error"].is_string() {
        return Err(format!(
            "{} {path}: {} {}",
            method, v["value"]["error"], v["value"]["message"]
        ));
    }
    Ok(v["value"].clone())
}

impl Browser {
    /// `None` when there is no chromedriver here.
    fn start(shots: PathBuf) -> Option<Browser> {
        let driver = std::env::var("NAAC_CHROMEDRIVER")
            .ok()
            .map(PathBuf::from)
            .or_else(|| which("chromedriver"))?;
        let chromium =
            std::env::var("NAAC_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
        let port = free_port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let t = Instant::now();
        while call(port, "GET", "/status", None).map(|v| v["ready"] == true) != Ok(true) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "chromedriver never got ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let mut b = Browser {
            driver: child,
            port,
            session: String::new(),
            shots,
            _profile: profile,
        };
        let v = call(port, "POST", "/session", Some(&caps)).expect("a browser session");
        b.session = v["sessionId"].as_str().expect("session id").to_string();
        std::fs::create_dir_all(&b.shots).expect("screenshot dir");
        Some(b)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        )
        .unwrap_or_else(|e| {
            self.shot("failure");
            panic!("{e}")
        })
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element `css` matches, waiting up to `wait` for it.
    fn find(&self, css: &str, wait: Duration) -> String {
        let t = Instant::now();
        loop {
            let r = call(
                self.port,
                "POST",
                &format!("/session/{}/element", self.session),
                Some(&json!({"using": "css selector", "value": css})),
            );
            if let Ok(v) = r
                && let Some(id) = v.as_object().and_then(|o| o.values().next())
            {
                return id.as_str().expect("element id").to_string();
            }
            if t.elapsed() > wait {
                self.shot("failure");
                panic!("no element {css} after {wait:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn text(&self, el: &str) -> String {
        self.call("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn click(&self, el: &str) {
        self.call("POST", &format!("/element/{el}/click"), Some(json!({})));
    }

    fn type_in(&self, el: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        );
    }

    fn clear(&self, el: &str) {
        self.call("POST", &format!("/element/{el}/clear"), Some(json!({})));
    }

    /// Waits until `css`'s text satisfies `ok`; its text.
    fn wait_text(&self, css: &str, wait: Duration, ok: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let el = self.find(css, wait);
            let text = self.text(&el);
            if ok(&text) {
                return text;
            }
            if t.elapsed() > wait {
                self.shot("failure");
                panic!("{css} still says {text:?} after {wait:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a screenshot as `NAME.png`.
    fn shot(&self, name: &str) {
        if let Ok(v) = call(
            self.port,
            "GET",
            &format!("/session/{}/screenshot", self.session),
            None,
        ) && let Some(b64) = v.as_str()
        {
            let path = self.shots.join(format!("{name}.png"));
            let _ = std::fs::write(&path, base64_decode(b64));
            eprintln!("screenshot {}", path.display());
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = s.bytes().filter_map(val).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | (d << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn shots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

#[test]
fn the_dashboard_logs_in_shows_the_pool_runs_a_job_and_refuses_a_bad_policy() {
    let Some(b) = Browser::start(shots_dir()) else {
        assert!(
            std::env::var_os("NAAC_REQUIRE_CHROMIUM").is_none(),
            "chromedriver is not installed: run scripts/chromium.sh install"
        );
        eprintln!("skipped: no chromedriver here (scripts/chromium.sh install puts it in place)");
        return;
    };
    let s = Scratch::new();
    let provider = Provider::start(&s, 2);
    let api = format!("127.0.0.1:{}", free_port());
    let _node = Kill(common::requester_node(
        &s,
        &api,
        &["--join", &provider.addr],
    ));

    // Log in with the address `naac api url` prints: the token leaves the address bar.
    let out = s
        .cmd()
        .args(["api", "url", "--api", &api])
        .output()
        .expect("naac api url");
    assert!(out.status.success(), "{}", stderr(&out));
    let login = String::from_utf8(out.stdout).expect("utf8");
    b.open(login.trim());
    b.find("#whoami", Duration::from_secs(10));
    b.wait_text("#whoami", Duration::from_secs(10), |t| {
        t.starts_with("node ")
    });
    assert_eq!(
        b.url(),
        format!("http://{api}/"),
        "the token stays out of the address bar"
    );
    b.shot("1-logged-in");

    // The pool: the provider appears in the grid.
    b.open(&format!("http://{api}/#pool"));
    let peer = provider.peer_id();
    b.find(
        &format!(".host[data-peer='{peer}']"),
        Duration::from_secs(30),
    );
    b.shot("2-pool");

    // Submit examples/pi from the form: the job file and its module.
    b.open(&format!("http://{api}/#jobs"));
    let pi = examples().join("pi").canonicalize().expect("examples/pi");
    let file = b.find("#job-file", Duration::from_secs(5));
    b.type_in(&file, &pi.join("job.toml").display().to_string());
    let files = b.find("#job-files", Duration::from_secs(5));
    b.type_in(&files, &pi.join("pi.wasm").display().to_string());
    b.shot("3-submit");
    let submit = b.find("#submit-button", Duration::from_secs(5));
    b.click(&submit);
    // The page follows the job it queued, live, until it is done.
    b.wait_text("#job-state", Duration::from_secs(10), |t| !t.is_empty());
    assert!(b.url().contains("#job/"), "{}", b.url());
    b.wait_text("#job-state", Duration::from_secs(240), |t| {
        assert!(t != "failed" && t != "cancelled", "the job ended {t}");
        t == "done"
    });
    let counts = b.wait_text("#job-counts", Duration::from_secs(5), |t| {
        t.contains("64/64")
    });
    assert!(counts.contains("64/64 tasks"), "{counts}");
    // The job's answer: its reduce step's output.
    let answer = b.wait_text("#reduce-output", Duration::from_secs(10), |t| {
        t.contains("3.14")
    });
    b.shot("4-done");

    // A task's stdout, as the node holds it.
    let first = b.find("#task-table button.stdout", Duration::from_secs(10));
    b.click(&first);
    let text = b.wait_text("#output", Duration::from_secs(10), |t| !t.is_empty());
    let id = b.url().rsplit('/').next().unwrap_or_default().to_string();
    let stored =
        std::fs::read_to_string(s.home().join("jobs").join(&id).join("out/tasks/0/stdout"))
            .expect("task 0's stdout on the node");
    assert_eq!(text.trim(), stored.trim());
    let reduce = std::fs::read_to_string(s.home().join("jobs").join(&id).join("out/reduce/stdout"))
        .expect("the reduce step's stdout on the node");
    assert_eq!(answer.trim(), reduce.trim());
    b.shot("5-stdout");

    // A policy key with a typo in its value: the error shows beside the field, and the file
    // is left as it was.
    b.open(&format!("http://{api}/#policy"));
    let field = b.find("input[name='max_cpu_percent']", Duration::from_secs(10));
    b.clear(&field);
    b.type_in(&field, "5O");
    let save = b.find(
        "button[data-save='max_cpu_percent']",
        Duration::from_secs(5),
    );
    b.click(&save);
    let err = b.wait_text(
        "[data-error-for='max_cpu_percent']",
        Duration::from_secs(10),
        |t| !t.is_empty(),
    );
    b.shot("6-policy-error");
    assert!(err.contains("max_cpu_percent"), "{err}");
    assert!(
        !s.home().join("policy.toml").exists() || {
            let p = std::fs::read_to_string(s.home().join("policy.toml")).unwrap_or_default();
            !p.contains("5O")
        }
    );
}
