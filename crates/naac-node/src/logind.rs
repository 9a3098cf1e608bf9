//! The owner's presence as systemd-logind sees it: the idle hints of the machine's login
//! sessions, read with `loginctl` (no D-Bus library) on a background thread, where logind
//! runs.
//!
//! What a session's hints mean (`IdleHint`, `LockedHint`, and `IdleSinceHint` in µs since
//! the epoch):
//!
//! - a graphical session (`x11`, `wayland`, `mir`) whose desktop reports idleness (GNOME,
//!   and others through their screen savers or idle daemons): `IdleHint=yes` or a locked
//!   screen means away since `IdleSinceHint` (the desktop's own idle delay after the last
//!   input, typically 5 minutes); `IdleHint=no` means the owner is at the machine now — but
//!   only once the session has been seen idle or locked: some desktops set "no" once and
//!   never report idleness, and trusting them would keep an `idle_only` node paused forever;
//! - a text session on a terminal (the console, SSH): logind derives the hint from the
//!   terminal's last access, so `IdleSinceHint` is the last keystroke either way;
//! - a session whose `IdleSinceHint` is 0 has never reported idleness (a desktop without an
//!   idle agent, a session without a terminal) and says nothing either way.
//!
//! Only sessions of people (class `user*`) that are `active` or `online` count; greeters,
//! lock screens and background sessions do not.

use std::collections::HashSet;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the sessions say about the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// At the machine now.
    Active,
    /// Last seen at this time.
    IdleSince(SystemTime),
}

/// Most sessions read per poll (and remembered as having reported idleness).
const MAX_SESSIONS: usize = 64;

/// The properties read of each session.
const PROPERTIES: [&str; 7] = [
    "Id",
    "Class",
    "Type",
    "State",
    "IdleHint",
    "LockedHint",
    "IdleSinceHint",
];

/// How long one `loginctl` call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Poll period while the node holds tasks (the owner's return must pause them quickly).
const POLL_BUSY: Duration = Duration::from_secs(1);

/// Poll period otherwise.
const POLL_IDLE: Duration = Duration::from_secs(5);

/// After a failed call (no logind, no `loginctl`), try again this much later.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// The session ids of `loginctl list-sessions --no-legend` (first column).
pub fn parse_sessions(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|id| id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .take(MAX_SESSIONS)
        .map(str::to_string)
        .collect()
}

/// What the `Key=Value` blocks of `loginctl show-session -p Id -p Class -p Type -p State
/// -p IdleHint -p LockedHint -p IdleSinceHint ID...` (one block per session, separated by
/// blank lines) say together: `Active` if any session is in use now, else the latest time
/// any was used; `None` when no session tells. `trusted` holds the graphical sessions seen
/// idle or locked so far (their "not idle" is believed); this reading adds to it.
pub fn parse_show(show: &str, trusted: &mut HashSet<String>) -> Option<Hint> {
    let mut latest: Option<SystemTime> = None;
    let mut active = false;
    for block in show.split("\n\n") {
        let get = |key: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim())
            })
        };
        let person = get("Class").is_some_and(|c| c.starts_with("user"));
        let live = matches!(get("State"), Some("active" | "online"));
        if !person || !live {
            continue;
        }
        let Some(since) = get("IdleSinceHint")
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&us| us > 0)
        else {
            continue;
        };
        let since = UNIX_EPOCH + Duration::from_micros(since);
        let graphical = matches!(get("Type"), Some("x11" | "wayland" | "mir"));
        let away = get("IdleHint") == Some("yes") || get("LockedHint") == Some("yes");
        let id = get("Id").unwrap_or_default();
        if !graphical {
            latest = latest.max(Some(since));
        } else if away {
            if trusted.len() < MAX_SESSIONS {
                trusted.insert(id.to_string());
            }
            latest = latest.max(Some(since));
        } else if get("IdleHint") == Some("no") && trusted.contains(id) {
            active = true;
        }
    }
    if active {
        return Some(Hint::Active);
    }
    latest.map(Hint::IdleSince)
}

/// Reads the hints every few seconds on its own thread; the latest reading is kept.
#[derive(Clone)]
pub struct Watcher {
    hint: Arc<Mutex<Option<Hint>>>,
    busy: Arc<AtomicBool>,
    /// Cleared by [`Watcher::stop`].
    alive: Arc<AtomicBool>,
    /// The watcher's thread, woken when the node becomes busy.
    thread: Option<std::thread::Thread>,
}

impl Watcher {
    /// Starts the thread. Where logind or `loginctl` is missing the hint stays `None` and
    /// the thread retries once a minute.
    pub fn start() -> Self {
        let mut w = Watcher {
            hint: Arc::new(Mutex::new(None)),
            busy: Arc::new(AtomicBool::new(false)),
            alive: Arc::new(AtomicBool::new(true)),
            thread: None,
        };
        let t = w.clone();
        match std::thread::Builder::new()
            .name("naac-logind".into())
            .spawn(move || t.run())
        {
            Ok(handle) => w.thread = Some(handle.thread().clone()),
            Err(e) => tracing::warn!("cannot start the logind watcher: {e}"),
        }
        w
    }

    /// The latest hint.
    pub fn hint(&self) -> Option<Hint> {
        *self.hint.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the node holds tasks (poll faster).
    pub fn set_busy(&self, busy: bool) {
        let was = self.busy.swap(busy, Ordering::Relaxed);
        if busy
            && !was
            && let Some(t) = &self.thread
        {
            t.unpark();
        }
    }

    /// Ends the thread (at its next wake-up, which this brings forward).
    pub fn stop(&self) {
        self.alive.store(false, Ordering::Relaxed);
        if let Some(t) = &self.thread {
            t.unpark();
        }
    }

    fn run(&self) {
        let mut told = false;
        let mut trusted = HashSet::new();
        while self.alive.load(Ordering::Relaxed) {
            let hint = read_hints(&mut trusted);
            let pause = match &hint {
                Ok(_) if self.busy.load(Ordering::Relaxed) => POLL_BUSY,
                Ok(_) => POLL_IDLE,
                Err(e) => {
                    if !told {
                        tracing::debug!("logind idle hints unavailable: {e}");
                        told = true;
                    }
                    RETRY_AFTER
                }
            };
            *self.hint.lock().unwrap_or_else(|e| e.into_inner()) = hint.ok().flatten();
            // Becoming busy wakes the thread early (`set_busy` unparks it).
            let until = Instant::now() + pause;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero()
                    || !self.alive.load(Ordering::Relaxed)
                    || pause == POLL_IDLE && self.busy.load(Ordering::Relaxed)
                {
                    break;
                }
                std::thread::park_timeout(left);
            }
        }
    }
}

/// One reading: list the sessions, then their hints. An error means logind (or `loginctl`)
/// is not there; a session that closes meanwhile is skipped.
fn read_hints(trusted: &mut HashSet<String>) -> Result<Option<Hint>, String> {
    let list = loginctl(&["list-sessions", "--no-legend"])?;
    let ids = parse_sessions(&list);
    if ids.is_empty() {
        return Ok(None);
    }
    let show = |ids: &[String]| {
        let mut args = vec!["show-session"];
        for p in PROPERTIES {
            args.extend(["-p", p]);
        }
        args.extend(ids.iter().map(String::as_str));
        loginctl(&args)
    };
    // One call for all; if one of them closed in between (loginctl then fails), each alone.
    let text = match show(&ids) {
        Ok(t) => t,
        Err(_) => ids
            .chunks(1)
            .filter_map(|one| show(one).ok())
            .collect::<Vec<_>>()
            .join("\n\n"),
    };
    // Forget sessions that are gone.
    trusted.retain(|id| ids.contains(id));
    Ok(parse_show(&text, trusted))
}

/// Runs `loginctl --no-pager ARGS` with a time limit; its stdout, or why not.
fn loginctl(args: &[&str]) -> Result<String, String> {
    let mut child = Command::new("loginctl")
        .arg("--no-pager")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("run loginctl: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("loginctl: no stdout")?;
    // The output is small (a few lines per session): read it on a helper thread so a hung
    // call can be killed.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.by_ref().take(1 << 20).read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CALL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("loginctl took longer than {CALL_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("wait for loginctl: {e}")),
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("loginctl {}: {status}", args.join(" ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(us)
    }

    #[test]
    fn session_ids() {
        let list = "      2 1000 alice seat0 tty2\n     c1  120 gdm   seat0 tty1\nnot/an id\n";
        assert_eq!(parse_sessions(list), ["2", "c1"]);
        assert!(parse_sessions("").is_empty());
    }

    #[test]
    fn a_desktop_is_believed_in_use_once_it_has_been_seen_idle() {
        let mut trusted = HashSet::new();
        let in_use = "Id=2\nClass=user\nType=wayland\nState=active\nIdleHint=no\nLockedHint=no\nIdleSinceHint=1700000000000000\n";
        // Never seen idle: it might be a desktop that never reports idleness.
        assert_eq!(parse_show(in_use, &mut trusted), None);
        let idle = "Id=2\nClass=user\nType=wayland\nState=active\nIdleHint=yes\nLockedHint=no\nIdleSinceHint=1700000300000000\n";
        assert_eq!(
            parse_show(idle, &mut trusted),
            Some(Hint::IdleSince(at(1_700_000_300_000_000)))
        );
        // Now its "not idle" is the owner back at the machine.
        assert_eq!(parse_show(in_use, &mut trusted), Some(Hint::Active));
        // Another session's word does not count for session 2's.
        let other = in_use.replace("Id=2", "Id=3");
        assert_eq!(parse_show(&other, &mut trusted), None);
    }

    #[test]
    fn a_locked_screen_is_away() {
        let mut trusted = HashSet::new();
        let locked = "Id=5\nClass=user\nType=x11\nState=active\nIdleHint=no\nLockedHint=yes\nIdleSinceHint=1700000000000000\n";
        assert_eq!(
            parse_show(locked, &mut trusted),
            Some(Hint::IdleSince(at(1_700_000_000_000_000)))
        );
        assert!(trusted.contains("5"));
    }

    #[test]
    fn terminals_give_their_last_keystroke() {
        let mut trusted = HashSet::new();
        let show = "Id=2\nClass=user\nType=wayland\nState=active\nIdleHint=yes\nIdleSinceHint=1700000000000000\n\n\
                    Id=7\nClass=user\nType=tty\nState=online\nIdleHint=no\nIdleSinceHint=1700000100000000\n";
        // A terminal's hint is its last keystroke, even while "not idle".
        assert_eq!(
            parse_show(show, &mut trusted),
            Some(Hint::IdleSince(at(1_700_000_100_000_000)))
        );
    }

    #[test]
    fn sessions_that_do_not_tell_are_ignored() {
        let mut trusted: HashSet<String> = ["1", "4", "6"].map(String::from).into();
        // A desktop without an idle agent (never reported), a greeter, a background
        // session, a closing one: none says anything about the owner.
        let show = "Id=1\nClass=user\nType=x11\nState=active\nIdleHint=no\nIdleSinceHint=0\n\n\
                    Id=4\nClass=greeter\nType=x11\nState=online\nIdleHint=no\nIdleSinceHint=1700000000000000\n\n\
                    Id=8\nClass=background\nType=unspecified\nState=active\nIdleHint=no\nIdleSinceHint=1700000000000000\n\n\
                    Id=6\nClass=user\nType=wayland\nState=closing\nIdleHint=no\nIdleSinceHint=1700000000000000\n";
        assert_eq!(parse_show(show, &mut trusted), None);
        assert_eq!(parse_show("", &mut trusted), None);
        assert_eq!(parse_show("garbage\n\n=\n", &mut trusted), None);
    }
}
