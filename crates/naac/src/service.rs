//! `naac service install | status | uninstall`: run `naac node` as a systemd service that
//! restarts on failure, starts at login (a user unit) or boot (a system unit), and runs at
//! idle CPU and I/O priority, so an owner installs once and forgets it.
//!
//! Where systemd is not running (a container, a CI machine) the unit is still written, and
//! the command says so and prints the command to run instead.

use anyhow::{Context as _, bail};
use naac_node::Home;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The unit's file name.
pub const UNIT: &str = "naac.service";

/// The data dir of a system unit run as another user (`--run-as`) unless NAAC_HOME says.
const STATE_DIR: &str = "/var/lib/naac";

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Write a systemd unit running `naac node ARGS…` (given after `--`), restarted on
    /// failure, started at login (--user) or boot (--system), at idle CPU and I/O priority;
    /// then enable and start it where systemd runs
    Install(InstallArgs),
    /// Whether the unit is installed, enabled and running, and whether its node's API
    /// answers (exit 1 when no unit is installed)
    Status(StatusArgs),
    /// Stop and disable the unit and remove its file
    Uninstall(Where),
}

/// Which unit: a user's or the system's, and where its file goes.
#[derive(clap::Args, Clone)]
pub struct Where {
    /// A user unit (~/.config/systemd/user), started at login, and at boot once lingering
    /// is on (install turns it on) [default unless root]
    #[arg(long, conflicts_with = "system")]
    user: bool,
    /// A system unit (/etc/systemd/system), started at boot [default as root]
    #[arg(long)]
    system: bool,
    /// Put the unit file in DIR instead of systemd's directory for the scope (packaging,
    /// tests)
    #[arg(long, value_name = "DIR")]
    unit_dir: Option<PathBuf>,
    /// Print what was done as JSON
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    at: Where,
    /// With --system: run the node as this user, with the data dir /var/lib/naac (systemd
    /// makes it theirs) unless NAAC_HOME names one they can write [default: root, with this
    /// data dir]
    #[arg(long, value_name = "USER", requires = "system")]
    run_as: Option<String>,
    /// Write the unit only: neither enable nor start it
    #[arg(long)]
    no_start: bool,
    /// Print the unit to stdout and write nothing
    #[arg(long, conflicts_with = "json")]
    print: bool,
    /// The node's arguments, after `--`: its roles and options, as `naac node` takes them
    /// (e.g. `-- --provide --slots 2`)
    #[arg(last = true, value_name = "NODE ARGS")]
    node_args: Vec<String>,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    at: Where,
    #[command(flatten)]
    api: crate::jobs::Api,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    User,
    System,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::System => "system",
        }
    }

    /// ` --user` for a user unit's `systemctl` and `journalctl`, else nothing.
    fn flag(self) -> &'static str {
        match self {
            Scope::User => " --user",
            Scope::System => "",
        }
    }

    /// `systemctl` with `--user` for a user unit.
    fn systemctl(self) -> Command {
        let mut c = Command::new("systemctl");
        if self == Scope::User {
            c.arg("--user");
        }
        c
    }
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Where {
    fn scope(&self) -> Scope {
        if self.system || (!self.user && is_root()) {
            Scope::System
        } else {
            Scope::User
        }
    }

    fn dir(&self, scope: Scope) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.unit_dir {
            return Ok(d.clone());
        }
        Ok(match scope {
            Scope::System => PathBuf::from("/etc/systemd/system"),
            Scope::User => {
                let config = std::env::var_os("XDG_CONFIG_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                    .context("neither XDG_CONFIG_HOME nor HOME is set: pass --unit-dir DIR")?;
                config.join("systemd/user")
            }
        })
    }
}

/// Whether systemd runs this machine (its own test, as `sd_booted` does it).
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// What a unit runs and how.
struct Unit {
    scope: Scope,
    exe: PathBuf,
    home: PathBuf,
    node_args: Vec<String>,
    run_as: Option<String>,
}

impl Unit {
    /// The command line the unit runs, as a shell would take it.
    fn command(&self) -> String {
        let mut s = format!(
            "NAAC_HOME={} {} node",
            shell_quote(&self.home.to_string_lossy()),
            shell_quote(&self.exe.to_string_lossy())
        );
        for a in &self.node_args {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        s
    }

    fn text(&self) -> String {
        let mut exec = format!("{} node", unit_quote(&self.exe.to_string_lossy()));
        for a in &self.node_args {
            exec.push(' ');
            exec.push_str(&unit_quote(a));
        }
        let mut u = String::new();
        u.push_str(&format!(
            "# Written by `naac service install` (naac {}). `naac service uninstall` removes it;\n\
             # install again to change the node's arguments.\n",
            env!("CARGO_PKG_VERSION")
        ));
        u.push_str("[Unit]\n");
        u.push_str(
            "Description=naac node: lends this machine to the pool as its owner's policy allows\n",
        );
        u.push_str("Documentation=man:naac(1)\n");
        if self.scope == Scope::System {
            u.push_str("Wants=network-online.target\nAfter=network-online.target\n");
        }
        u.push_str("\n[Service]\nType=exec\n");
        u.push_str(&format!("ExecStart={exec}\n"));
        u.push_str(&format!(
            "Environment={}\n",
            env_quote(&format!("NAAC_HOME={}", self.home.to_string_lossy()))
        ));
        u.push_str(
            "# On failure it comes back after 5 s; SIGTERM stops it cleanly (running tasks are\n\
             # handed back to their requesters).\n\
             Restart=on-failure\nRestartSec=5s\nTimeoutStopSec=30s\n\
             # Exit 2 is a usage error: restarting cannot mend it.\n\
             RestartPreventExitStatus=2\n\
             # The journal keeps the log; no colour codes in it.\n\
             Environment=NO_COLOR=1\n\
             # The owner's own work comes first: the lowest CPU weight and nice level, idle I/O.\n\
             Nice=19\nCPUWeight=1\nIOSchedulingClass=idle\n",
        );
        if self.scope == Scope::System {
            if let Some(user) = &self.run_as {
                u.push_str(&format!("User={}\n", env_quote(user)));
                if self.home == Path::new(STATE_DIR) {
                    // systemd makes /var/lib/naac and gives it to the user.
                    u.push_str("StateDirectory=naac\nStateDirectoryMode=0700\n");
                }
            }
            // Guests never leave wasmtime's sandbox; the node itself gains no privilege and
            // keeps its temporary files to itself. (No read-only file system: the owner's
            // storage_dir may put task scratch anywhere, and may change while it runs.)
            u.push_str("NoNewPrivileges=yes\nPrivateTmp=yes\n");
        }
        u.push_str("\n[Install]\n");
        u.push_str(match self.scope {
            Scope::User => "WantedBy=default.target\n",
            Scope::System => "WantedBy=multi-user.target\n",
        });
        u
    }
}

/// An argument of an `ExecStart=` line: quoted where systemd would split it, and `%`
/// specifiers and `$` variables escaped, never expanded.
fn unit_quote(s: &str) -> String {
    quote(&s.replace('$', "$$"))
}

/// A value of an `Environment=` or `User=` line, where systemd expands `%` specifiers but
/// takes `$` literally.
fn env_quote(s: &str) -> String {
    quote(s)
}

fn quote(s: &str) -> String {
    let escaped = s.replace('%', "%%");
    let plain = !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=,@+%$".contains(c));
    if plain {
        return escaped;
    }
    let mut q = String::from("\"");
    for c in escaped.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// An argument as a POSIX shell takes it.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=,@+%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub async fn main(cmd: Cmd, cli: clap::Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Install(a) => install(a, cli),
        Cmd::Status(a) => status(a).await,
        Cmd::Uninstall(a) => uninstall(a),
    }
}

fn install(a: InstallArgs, cli: clap::Command) -> anyhow::Result<ExitCode> {
    // The node's arguments are checked now, not at every restart of a unit that fails.
    let mut argv = vec!["naac".to_string(), "node".to_string()];
    argv.extend(a.node_args.iter().cloned());
    if let Err(e) = cli.try_get_matches_from(&argv) {
        bail!(
            "the node's arguments (after --) are not ones `naac node` takes:\n{}",
            e.render().to_string().trim_start_matches("error: ")
        );
    }
    let scope = a.at.scope();
    let dir = a.at.dir(scope)?;
    if scope == Scope::System && a.at.unit_dir.is_none() && !is_root() && !a.print {
        bail!(
            "a system unit goes in {} and needs root: run this with sudo, or install a user unit (--user)",
            dir.display()
        );
    }
    // A node run as another user gets a data dir of its own, unless NAAC_HOME names one.
    let explicit = std::env::var_os("NAAC_HOME").is_some_and(|h| !h.is_empty());
    let home = match &a.run_as {
        Some(_) if !explicit => Home::at(PathBuf::from(STATE_DIR)),
        _ => Home::from_env()?,
    };
    if !a.print && a.run_as.is_none() {
        home.ensure()?;
    }
    let home_dir = std::path::absolute(home.root())
        .with_context(|| format!("resolve the data dir {}", home.root().display()))?;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("find this program's own path for the unit's ExecStart")?;
    let unit = Unit {
        scope,
        exe,
        home: home_dir,
        node_args: a.node_args.clone(),
        run_as: a.run_as.clone(),
    };
    let text = unit.text();
    if a.print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let path = dir.join(UNIT);
    write_atomically(&path, text.as_bytes())?;
    let systemd = systemd_running();
    let mut started = false;
    let mut notes = Vec::new();
    // A unit written elsewhere (--unit-dir) is one systemd does not read: not started.
    if systemd && !a.no_start && a.at.unit_dir.is_none() {
        if scope == Scope::User {
            // Without lingering a user's units start at login, not at boot; and with it the
            // user's manager runs now, for the calls below.
            let user = std::env::var("USER").unwrap_or_default();
            let mut linger = Command::new("loginctl");
            linger.arg("enable-linger");
            if !user.is_empty() {
                linger.arg(&user);
            }
            if let Err(e) = run(&mut linger) {
                notes.push(format!(
                    "the node starts at login, not at boot: {e:#} (ask root for `loginctl enable-linger {user}`)"
                ));
            }
        }
        // `restart`, not `start`: a node already running takes the new arguments.
        for args in [
            &["daemon-reload"][..],
            &["enable", UNIT],
            &["restart", UNIT],
        ] {
            if let Err(e) = run(scope.systemctl().args(args)) {
                let user = scope.flag();
                bail!(
                    "wrote {}, but {e:#}\nhint: a user unit needs the user's own systemd (log in as the user rather than su or sudo -u), or install a system unit as root (--system); `systemctl{user} enable --now {UNIT}` finishes the job, `naac service uninstall` removes the file",
                    path.display()
                );
            }
        }
        started = true;
        if let Some(user) = &a.run_as {
            notes.push(format!(
                "the node runs as {user} with the data dir {}: run the CLI as {user} with NAAC_HOME={} to reach it",
                unit.home.display(),
                unit.home.display()
            ));
        }
    } else if !systemd {
        notes.push(format!(
            "systemd is not running here (no /run/systemd/system): nothing will start the unit.\n\
             Run the node yourself instead (e.g. in tmux, or from your init system):\n  {}",
            unit.command()
        ));
    } else {
        let user = scope.flag();
        notes.push(format!(
            "not started (--no-start or --unit-dir): `systemctl{user} daemon-reload && systemctl{user} enable --now {UNIT}` starts it"
        ));
    }
    if a.at.json {
        let v = serde_json::json!({
            "unit": path,
            "scope": scope.name(),
            "command": unit.command(),
            "systemd": systemd,
            "started": started,
            "notes": notes,
        });
        println!("{v:#}");
    } else {
        println!("wrote {} ({} unit)", path.display(), scope.name());
        println!("runs  {}", unit.command());
        if started {
            let user = scope.flag();
            println!(
                "started and enabled: `systemctl{user} status {UNIT}` shows it, `journalctl{user} -u {UNIT}` its log"
            );
        }
        for n in &notes {
            eprintln!("note: {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("the unit's path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".naac-unit-")
        .tempfile_in(dir)
        .with_context(|| format!("write in {}", dir.display()))?;
    std::io::Write::write_all(tmp.as_file_mut(), bytes)
        .with_context(|| format!("write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// Runs a command to its end; its failure names it and says what it printed.
fn run(c: &mut Command) -> anyhow::Result<()> {
    let shown = format!(
        "{} {}",
        c.get_program().to_string_lossy(),
        c.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = c.output().with_context(|| format!("run `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A `systemctl` query's answer (`enabled`, `active`, …), or `None` where it cannot be asked.
fn query(scope: Scope, what: &str) -> Option<String> {
    let out = scope.systemctl().args([what, UNIT]).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}

async fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let scope = a.at.scope();
    let path = a.at.dir(scope)?.join(UNIT);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let exec = text.as_deref().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .map(str::to_owned)
    });
    let systemd = systemd_running();
    let (enabled, active) = if systemd && text.is_some() {
        (query(scope, "is-enabled"), query(scope, "is-active"))
    } else {
        (None, None)
    };
    // The node's API where the unit puts it (`--api` among its arguments), unless told.
    let unit_api = exec.as_deref().and_then(|e| {
        let words: Vec<&str> = e.split_whitespace().collect();
        words
            .iter()
            .enumerate()
            .find_map(|(i, w)| match w.strip_prefix("--api=") {
                Some(v) => Some(v.to_string()),
                None => (*w == "--api")
                    .then(|| words.get(i + 1).map(|v| v.to_string()))
                    .flatten(),
            })
    });
    let api = match crate::jobs::client(&a.api.or_addr(unit_api)) {
        Ok(c) => match c.node().await {
            Ok(n) => Ok(n),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(format!("{e:#}")),
    };
    if a.at.json {
        let v = serde_json::json!({
            "unit": path,
            "scope": scope.name(),
            "installed": text.is_some(),
            "exec_start": exec,
            "systemd": systemd,
            "enabled": enabled,
            "active": active,
            "api": match &api { Ok(n) => serde_json::json!({"answers": true, "node": n}), Err(e) => serde_json::json!({"answers": false, "error": e}) },
        });
        println!("{v:#}");
    } else {
        let dash = || "-".to_string();
        match &text {
            Some(_) => println!("unit     {} ({} unit)", path.display(), scope.name()),
            None => println!(
                "unit     none at {} (`naac service install` writes it)",
                path.display()
            ),
        }
        if let Some(e) = &exec {
            println!("runs     {e}");
        }
        if systemd {
            println!("enabled  {}", enabled.unwrap_or_else(dash));
            println!("active   {}", active.unwrap_or_else(dash));
        } else {
            println!("systemd  not running here: nothing starts the unit");
        }
        match &api {
            Ok(n) => println!(
                "api      answers (node {})",
                n["peer_id"].as_str().or(n["id"].as_str()).unwrap_or("?")
            ),
            Err(e) => println!("api      {}", e.lines().next().unwrap_or_default()),
        }
    }
    Ok(if text.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn uninstall(a: Where) -> anyhow::Result<ExitCode> {
    let scope = a.scope();
    let path = a.dir(scope)?.join(UNIT);
    if !path.exists() {
        if a.json {
            println!(
                "{:#}",
                serde_json::json!({"unit": path, "scope": scope.name(), "removed": false})
            );
        } else {
            println!("no unit at {}: nothing to remove", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut notes = Vec::new();
    let systemd = systemd_running();
    let managed = systemd && a.unit_dir.is_none();
    if managed && let Err(e) = run(scope.systemctl().args(["disable", "--now", UNIT])) {
        notes.push(format!("{e:#}"));
    }
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    if managed && let Err(e) = run(scope.systemctl().arg("daemon-reload")) {
        notes.push(format!("{e:#}"));
    }
    if a.json {
        println!(
            "{:#}",
            serde_json::json!({"unit": path, "scope": scope.name(), "removed": true, "notes": notes})
        );
    } else {
        println!("removed {} ({} unit)", path.display(), scope.name());
        for n in &notes {
            eprintln!("note: {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unit_arguments_are_quoted_and_never_expanded() {
        assert_eq!(unit_quote("--provide"), "--provide");
        assert_eq!(unit_quote("50%"), "50%%");
        assert_eq!(unit_quote("$HOME"), "$$HOME");
        assert_eq!(unit_quote("a b"), "\"a b\"");
        assert_eq!(unit_quote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(unit_quote(""), "\"\"");
        // `Environment=` takes `$` literally and expands only `%`.
        assert_eq!(env_quote("NAAC_HOME=/a $b 5%"), "\"NAAC_HOME=/a $b 5%%\"");
    }

    #[test]
    fn shell_commands_are_quoted() {
        assert_eq!(shell_quote("/usr/bin/naac"), "/usr/bin/naac");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn a_user_unit_has_no_system_only_keys() {
        let mut u = Unit {
            scope: Scope::User,
            exe: "/usr/bin/naac".into(),
            home: "/home/a/.local/share/naac".into(),
            node_args: vec!["--provide".into()],
            run_as: None,
        };
        let t = u.text();
        assert!(t.contains("ExecStart=/usr/bin/naac node --provide\n"));
        assert!(t.contains("WantedBy=default.target"));
        assert!(!t.contains("network-online") && !t.contains("ProtectSystem"));
        u.scope = Scope::System;
        u.run_as = Some("alice".into());
        let t = u.text();
        assert!(t.contains("WantedBy=multi-user.target") && t.contains("User=alice\n"));
        assert!(t.contains("NoNewPrivileges=yes") && !t.contains("StateDirectory"));
        u.home = STATE_DIR.into();
        assert!(u.text().contains("StateDirectory=naac\n"));
    }
}
