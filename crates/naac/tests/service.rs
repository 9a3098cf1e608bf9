//! `naac service`, `naac completions` and `naac man` against the real tools: the unit
//! passes `systemd-analyze verify`, the bash (and, where installed, zsh and fish) completion
//! scripts load in their shells, and `man -l` renders the page without a warning.
//!
//! A tool that is missing makes its test say so and pass, unless `NAAC_REQUIRE_OS_TOOLS` is
//! set (CI sets it after `scripts/os-tools.sh install`).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

const NAAC: &str = env!("CARGO_BIN_EXE_naac");

fn naac(home: &Path, args: &[&str]) -> Output {
    Command::new(NAAC)
        .env("NAAC_HOME", home)
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether `tool` can run here; without it the test passes unless CI requires it.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("NAAC_REQUIRE_OS_TOOLS").is_none(),
            "{tool} is required here (scripts/os-tools.sh install) but missing"
        );
        eprintln!("skipped: {tool} is not installed (scripts/os-tools.sh install)");
    }
    found
}

/// `systemd-analyze verify` says nothing about the unit, and succeeds.
fn verify(unit: &Path, user: bool, runtime: &Path) {
    let mut c = Command::new("systemd-analyze");
    if user {
        // A user manager needs a runtime dir even to check a unit.
        c.arg("--user").env("XDG_RUNTIME_DIR", runtime);
    }
    let out = c.args(["verify", "--man=no"]).arg(unit).output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify {}: {}{}",
        unit.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn units_install_verify_and_uninstall() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let runtime = dir.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let analyze = have("systemd-analyze");
    for (scope, wanted_by) in [
        ("--user", "default.target"),
        ("--system", "multi-user.target"),
    ] {
        let units = dir.path().join(scope.trim_start_matches('-'));
        let at = units.to_str().unwrap();
        let out = naac(
            &home,
            &[
                "service",
                "install",
                scope,
                "--unit-dir",
                at,
                "--no-start",
                "--json",
                "--",
                "--provide",
                "--slots",
                "2",
                "--api",
                "127.0.0.1:0",
            ],
        );
        assert!(
            out.status.success(),
            "install {scope}: {}",
            text(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let unit = units.join("naac.service");
        assert_eq!(v["unit"], unit.to_str().unwrap());
        assert_eq!(v["started"], false);
        // The data dir the unit names exists, so a sandboxed system unit can write it.
        assert!(home.is_dir());
        let body = std::fs::read_to_string(&unit).unwrap();
        let exe = Path::new(NAAC).canonicalize().unwrap();
        assert!(
            body.contains(&format!(
                "ExecStart={} node --provide --slots 2 --api 127.0.0.1:0\n",
                exe.display()
            )),
            "{body}"
        );
        for key in [
            "Restart=on-failure",
            "Nice=19",
            "IOSchedulingClass=idle",
            "CPUWeight=1",
            &format!("WantedBy={wanted_by}"),
            &format!("Environment=NAAC_HOME={}", home.display()),
        ] {
            assert!(body.contains(key), "{key} missing from:\n{body}");
        }
        if !Path::new("/run/systemd/system").exists() {
            assert!(
                v["notes"][0]
                    .as_str()
                    .unwrap()
                    .contains("systemd is not running here"),
                "{v}"
            );
        }
        if analyze {
            verify(&unit, scope == "--user", &runtime);
        }

        let out = naac(
            &home,
            &["service", "status", scope, "--unit-dir", at, "--json"],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["installed"], true);
        assert!(v["exec_start"].as_str().unwrap().contains("--slots 2"));

        let out = naac(&home, &["service", "uninstall", scope, "--unit-dir", at]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(!unit.exists());
        assert_eq!(
            std::fs::read_dir(&units).unwrap().count(),
            0,
            "a stray file"
        );
        let out = naac(&home, &["service", "status", scope, "--unit-dir", at]);
        assert_eq!(out.status.code(), Some(1));
        let out = naac(&home, &["service", "uninstall", scope, "--unit-dir", at]);
        assert!(out.status.success());
        assert!(text(&out.stdout).contains("nothing to remove"));
    }
}

#[test]
fn a_unit_with_odd_arguments_still_verifies() {
    // Spaces, quotes, `%` and `$` in the node's arguments and the data dir stay literal.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("my data $HOME 100%");
    let units = dir.path().join("units");
    let out = naac(
        &home,
        &[
            "service",
            "install",
            "--system",
            "--unit-dir",
            units.to_str().unwrap(),
            "--no-start",
            "--",
            "--provide",
            "--owner",
            "alice's \"box\" $USER 50%",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = std::fs::read_to_string(units.join("naac.service")).unwrap();
    // ExecStart escapes `$` (it would expand it); Environment takes it literally.
    assert!(
        body.contains(" node --provide --owner \"alice's \\\"box\\\" $$USER 50%%\"\n"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "Environment=\"NAAC_HOME={}/my data $HOME 100%%\"\n",
            dir.path().display()
        )),
        "{body}"
    );
    if have("systemd-analyze") {
        verify(&units.join("naac.service"), false, dir.path());
    }
}

#[test]
fn a_node_run_as_another_user_gets_a_data_dir_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    let out = Command::new(NAAC)
        .env_remove("NAAC_HOME")
        .env("HOME", dir.path())
        .args([
            "service",
            "install",
            "--system",
            "--run-as",
            "daemon",
            "--unit-dir",
            units.to_str().unwrap(),
            "--no-start",
            "--",
            "--provide",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = std::fs::read_to_string(units.join("naac.service")).unwrap();
    for key in [
        "User=daemon\n",
        "StateDirectory=naac\n",
        "Environment=NAAC_HOME=/var/lib/naac\n",
    ] {
        assert!(body.contains(key), "{key} missing from:\n{body}");
    }
    // Nothing was made in the installer's own data dir.
    assert!(!dir.path().join(".local").exists());
    if have("systemd-analyze") {
        verify(&units.join("naac.service"), false, dir.path());
    }
}

#[test]
fn node_arguments_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    let out = naac(
        dir.path(),
        &[
            "service",
            "install",
            "--user",
            "--unit-dir",
            units.to_str().unwrap(),
            "--",
            "--provide",
            "--slotz",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("--slotz") && err.contains("--slots"), "{err}");
    assert!(!units.exists(), "a unit was written for bad arguments");
}

#[test]
fn completion_scripts_load_in_their_shells() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, check) in [
        // After loading, completing `naac serv` offers `service`.
        (
            "bash",
            "source \"$1\" && COMP_WORDS=(naac serv) COMP_CWORD=1 && _naac naac serv naac && [[ \" ${COMPREPLY[*]} \" == *' service '* ]]",
        ),
        (
            "zsh",
            "autoload -Uz compinit && compinit -u && source \"$1\" && whence -w _naac >/dev/null",
        ),
        (
            "fish",
            "source $argv[1]; and complete -C 'naac serv' | string match -q 'service*'",
        ),
    ] {
        let out = naac(dir.path(), &["completions", shell]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(!out.stdout.is_empty());
        if !have(shell) {
            continue;
        }
        let script = dir.path().join(format!("naac.{shell}"));
        std::fs::write(&script, &out.stdout).unwrap();
        let mut c = Command::new(shell);
        match shell {
            "fish" => c.args(["--no-config", "-c", check]),
            _ => c.args(["-c", check, shell]),
        };
        let run = c.arg(&script).env("HOME", dir.path()).output().unwrap();
        assert!(
            run.status.success() && run.stderr.is_empty(),
            "{shell} did not load its completions: {}{}",
            text(&run.stdout),
            text(&run.stderr)
        );
    }
}

#[test]
fn the_man_page_renders_and_covers_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = naac(dir.path(), &["man"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = dir.path().join("naac.1");
    std::fs::write(&page, &out.stdout).unwrap();
    // Every command `--help` lists has its own subsection.
    let help = text(&naac(dir.path(), &["--help"]).stdout);
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        // A command's line starts with two spaces; its wrapped help with more.
        .filter_map(|l| l.strip_prefix("  ").filter(|r| !r.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 20, "{commands:?}");
    let roff = text(&out.stdout);
    for c in &commands {
        assert!(
            roff.contains(&format!(".SS \"naac {c}\"")),
            "no section for {c}"
        );
    }
    assert!(roff.contains(".SS \"naac service install\""));
    if !have("man") {
        return;
    }
    let run = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    assert!(
        run.status.success() && run.stderr.is_empty(),
        "man -l: {}",
        text(&run.stderr)
    );
    let shown = text(&run.stdout);
    assert!(shown.contains("naac service install") && shown.contains("COMMANDS"));
}
