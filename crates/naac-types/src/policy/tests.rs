//! Unit tests of the policy file: parsing and its errors, `set_key`, `to_toml` round trips,
//! `evaluate` and the time windows in civil time.

use super::text::{format_days, parse_days, parse_time};
use super::*;
use crate::units::parse_duration;
use std::path::Path;

fn path() -> &'static Path {
    Path::new("/home/mary/.naac/policy.toml")
}

fn parse(src: &str) -> Result<Policy, PolicyError> {
    Policy::parse(path(), src)
}

fn ok(src: &str) -> Policy {
    match parse(src) {
        Ok(p) => p,
        Err(e) => panic!("{src:?} should parse: {e} (hint: {:?})", e.hint),
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// A made-up peer id: 52 base58 characters.
fn peer(c: char) -> String {
    format!("12D3KooW{}", c.to_string().repeat(44))
}

/// A policy in UTC with these windows (TOML `[[windows]]` tables).
fn windows(tables: &str) -> Policy {
    ok(&format!("time_zone = \"UTC\"\n{tables}"))
}

fn allowed(p: &Policy, at: &str) -> bool {
    p.window_state(ts(at)).allowed
}

#[test]
fn empty_file_is_the_desktop_defaults() {
    let p = ok("");
    assert_eq!(p, Policy::default());
    assert_eq!(p.max_slots, None);
    assert_eq!(p.max_cpu_percent, 100);
    assert!(p.idle_only);
    assert_eq!(p.idle_after, Duration::from_secs(300));
    assert_eq!(p.idle_cpu_percent, 25);
    assert!(p.windows.is_empty());
    assert_eq!(p.time_zone, None);
    assert_eq!(p.max_task_runtime, None);
    assert_eq!(p.max_task_memory, None);
    assert_eq!(p.storage_quota, 10 << 30);
    assert_eq!(p.storage_dir, None);
    assert!(p.allow.is_empty() && p.deny.is_empty());
    assert_eq!(p.min_battery_percent, 20);
    assert!(p.on_ac_only);
    assert_eq!(p.min_price, 0);
    assert_eq!(p.pause_grace, Duration::from_secs(120));
    // Only comments: still the defaults.
    assert_eq!(ok("# nothing here\n\n"), Policy::default());
}

#[test]
fn load_missing_file_is_default_and_unreadable_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("policy.toml");
    assert_eq!(Policy::load(&missing), Ok(Policy::default()));

    std::fs::write(&missing, "max_slots = 3\n").expect("write");
    assert_eq!(Policy::load(&missing).expect("load").max_slots, Some(3));

    // A directory cannot be read as a file.
    let e = Policy::load(dir.path()).expect_err("a directory is not a policy file");
    assert_eq!(e.file, dir.path());
    assert!(e.message.starts_with("cannot read"), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "policy file {}: cannot read",
            dir.path().display()
        )),
        "{e}"
    );
}

#[test]
fn full_file_parses() {
    let src = format!(
        r#"
max_slots = 4
max_cpu_percent = 50
idle_only = false
idle_after = "10m"
idle_cpu_percent = 30
time_zone = "Europe/Berlin"
max_task_runtime = "2h"
max_task_memory = "2GiB"
storage_quota = 1_000_000
storage_dir = "/srv/naac"
allow = ["{a}", "{b}"]
deny = ["{c}"]
min_battery_percent = 0
on_ac_only = false
min_price = 7
pause_grace = 90

[[windows]]
days = "mon-fri"
from = "18:00"
to = "08:00"
action = "allow"

[[windows]]
days = "SAT,Sunday"
action = "Deny"

[[windows]]
days = "daily"
from = "17:00"
to = "24:00"
price = 2
"#,
        a = peer('A'),
        b = peer('B'),
        c = peer('C')
    );
    let p = ok(&src);
    assert_eq!(p.max_slots, Some(4));
    assert_eq!(p.max_cpu_percent, 50);
    assert!(!p.idle_only);
    assert_eq!(p.idle_after, Duration::from_secs(600));
    assert_eq!(p.idle_cpu_percent, 30);
    assert_eq!(p.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(p.max_task_runtime, Some(Duration::from_secs(7200)));
    assert_eq!(p.max_task_memory, Some(2 << 30));
    assert_eq!(p.storage_quota, 1_000_000);
    assert_eq!(p.storage_dir, Some(PathBuf::from("/srv/naac")));
    assert_eq!(p.allow, [peer('A'), peer('B')]);
    assert_eq!(p.deny, [peer('C')]);
    assert_eq!(p.min_battery_percent, 0);
    assert!(!p.on_ac_only);
    assert_eq!(p.min_price, 7);
    assert_eq!(p.pause_grace, Duration::from_secs(90));
    assert_eq!(
        p.windows,
        [
            Window {
                days: 0b001_1111,
                from: 18 * 60,
                to: 8 * 60,
                action: WindowAction::Allow
            },
            Window {
                days: 0b110_0000,
                from: 0,
                to: 1440,
                action: WindowAction::Deny
            },
            Window {
                days: 0b111_1111,
                from: 17 * 60,
                to: 1440,
                action: WindowAction::Price(2.0)
            },
        ]
    );
    assert_eq!(p.tz().iana_name(), Some("Europe/Berlin"));
}

#[test]
fn inline_windows_and_midnight_as_end() {
    let p = ok(r#"windows = [{ days = "fri", from = "22:00", to = "00:00", action = "deny" }]"#);
    assert_eq!(p.windows[0].to, 1440);
    assert_eq!(p.windows[0].days, 1 << 4);
}

#[test]
fn day_lists_ranges_and_names() {
    let cases: &[(&str, u8)] = &[
        ("mon", 0b000_0001),
        ("sun", 0b100_0000),
        ("mon-fri", 0b001_1111),
        ("weekdays", 0b001_1111),
        ("sat,sun", 0b110_0000),
        ("weekends", 0b110_0000),
        ("mon,wed-fri", 0b001_1101),
        ("Mon, WED - Fri", 0b001_1101),
        ("fri-mon", 0b111_0001),
        ("daily", 0b111_1111),
        ("ALL", 0b111_1111),
        ("tuesday,thurs", 0b000_1010),
    ];
    for (text, mask) in cases {
        assert_eq!(parse_days(text), Ok(*mask), "{text}");
        // Formatting reads back to the same days.
        assert_eq!(parse_days(&format_days(*mask)), Ok(*mask), "{text}");
    }
    assert_eq!(format_days(0b001_1111), "mon-fri");
    assert_eq!(format_days(0b110_0000), "sat,sun");
    assert_eq!(format_days(0b001_1101), "mon,wed-fri");
    assert_eq!(format_days(0b111_0001), "mon,fri-sun");
    assert_eq!(format_days(0x7f), "daily");
    for bad in ["", "mo", "funday", "mon,,fri", "mon-", "weekday"] {
        assert!(parse_days(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn times() {
    assert_eq!(parse_time("00:00", false), Ok(0));
    assert_eq!(parse_time("8:05", false), Ok(485));
    assert_eq!(parse_time("23:59", false), Ok(1439));
    assert_eq!(parse_time("24:00", true), Ok(1440));
    assert_eq!(parse_time("00:00", true), Ok(1440));
    assert!(parse_time("24:00", false).is_err());
    for bad in [
        "25:00", "12:60", "12", "12:5", "123:00", "ab:cd", "-1:00", "12:00pm",
    ] {
        assert!(parse_time(bad, true).is_err(), "{bad:?} should not parse");
    }
}

/// One bad file and what its error must say.
struct Bad {
    src: String,
    line: Option<usize>,
    field: Option<&'static str>,
    message: &'static str,
    hint: &'static str,
}

fn bad(
    src: impl Into<String>,
    line: Option<usize>,
    field: Option<&'static str>,
    message: &'static str,
    hint: &'static str,
) -> Bad {
    Bad {
        src: src.into(),
        line,
        field,
        message,
        hint,
    }
}

#[test]
fn every_error_names_line_field_and_hint() {
    let window = |body: &str| format!("max_slots = 2\n\n[[windows]]\n{body}");
    let ok_window = "days = \"mon\"\nfrom = \"09:00\"\nto = \"10:00\"\naction = \"allow\"\n";
    let cases = vec![
        bad(
            "max_slots = 2\nmax_cpu_pecent = 50\n",
            Some(2),
            None,
            "unknown key \"max_cpu_pecent\"",
            "did you mean \"max_cpu_percent\"?",
        ),
        bad(
            "colour = \"blue\"\n",
            Some(1),
            None,
            "unknown key \"colour\"",
            "known keys: max_slots,",
        ),
        bad(
            "\n\nmax_cpu_percent = 150\n",
            Some(3),
            Some("max_cpu_percent"),
            "150 is out of range",
            "use a number from 1 to 100",
        ),
        bad(
            "max_cpu_percent = \"50%\"\n",
            Some(1),
            Some("max_cpu_percent"),
            "must be a whole number, found string",
            "e.g. max_cpu_percent = 50",
        ),
        bad(
            "max_slots = 0\n",
            Some(1),
            Some("max_slots"),
            "0 is out of range",
            "at least 1",
        ),
        bad(
            "max_slots = 99999999999\n",
            Some(1),
            Some("max_slots"),
            "99999999999 is out of range",
            "at least 1",
        ),
        bad(
            "idle_cpu_percent = 0\n",
            Some(1),
            Some("idle_cpu_percent"),
            "0 is out of range",
            "from 1 to 100",
        ),
        bad(
            "min_battery_percent = 101\n",
            Some(1),
            Some("min_battery_percent"),
            "101 is out of range",
            "from 0 to 100",
        ),
        bad(
            "min_price = -1\n",
            Some(1),
            Some("min_price"),
            "-1 is out of range",
            "at least 0",
        ),
        bad(
            "idle_only = \"yes\"\n",
            Some(1),
            Some("idle_only"),
            "must be true or false, found string",
            "idle_only = false (no quotes)",
        ),
        bad(
            "on_ac_only = 1\n",
            Some(1),
            Some("on_ac_only"),
            "must be true or false, found integer",
            "on_ac_only = false",
        ),
        bad(
            "idle_after = \"5 fortnights\"\n",
            Some(1),
            Some("idle_after"),
            "is not a duration",
            "e.g. idle_after = \"5m\"",
        ),
        bad(
            "pause_grace = 2.5\n",
            Some(1),
            Some("pause_grace"),
            "must be a duration like \"5m\", found float",
            "e.g. pause_grace = \"2m\"",
        ),
        bad(
            "max_task_runtime = \"0s\"\n",
            Some(1),
            Some("max_task_runtime"),
            "must be longer than zero",
            "leave it out for no limit",
        ),
        bad(
            "max_task_memory = \"2 parsecs\"\n",
            Some(1),
            Some("max_task_memory"),
            "unknown size unit",
            "e.g. max_task_memory = \"2GiB\"",
        ),
        bad(
            "storage_quota = 0\n",
            Some(1),
            Some("storage_quota"),
            "must be more than zero",
            "e.g. storage_quota = \"10GiB\"",
        ),
        bad(
            "storage_dir = \"naac-data\"\n",
            Some(1),
            Some("storage_dir"),
            "\"naac-data\" is not an absolute path",
            "write the full path",
        ),
        bad(
            "storage_dir = \"\"\n",
            Some(1),
            Some("storage_dir"),
            "is empty",
            "leave the key out",
        ),
        bad(
            "time_zone = \"Mars/Olympus_Mons\"\n",
            Some(1),
            Some("time_zone"),
            "unknown time zone \"Mars/Olympus_Mons\"",
            "IANA name",
        ),
        bad(
            format!("allow = [\n  \"{}\",\n  \"not-a-peer\",\n]\n", peer('A')),
            Some(3),
            Some("allow[1]"),
            "\"not-a-peer\" is not a peer id",
            "40 to 60 base58 characters",
        ),
        bad(
            // 0, O, I and l are not base58.
            format!("deny = [\"{}\"]\n", peer('0')),
            Some(1),
            Some("deny[0]"),
            "is not a peer id",
            "base58",
        ),
        bad(
            format!("deny = \"{}\"\n", peer('A')),
            Some(1),
            Some("deny"),
            "must be a list of peer ids, found string",
            "deny = [\"12D3KooW...\"]",
        ),
        bad(
            "allow = [42]\n",
            Some(1),
            Some("allow[0]"),
            "must be a string, found integer",
            "list of peer ids",
        ),
        bad("max_slots = \n", Some(1), None, "", "policy.toml is TOML"),
        bad(
            "windows = \"weekends\"\n",
            Some(1),
            Some("windows"),
            "must be a list of tables, found string",
            "[[windows]]",
        ),
        bad(
            window("days = \"mon-fri\"\nform = \"09:00\"\nto = \"17:00\"\naction = \"allow\"\n"),
            Some(5),
            Some("windows[0]"),
            "unknown key \"form\"",
            "did you mean \"from\"?",
        ),
        bad(
            window("from = \"09:00\"\nto = \"17:00\"\naction = \"allow\"\n"),
            Some(3),
            Some("windows[0]"),
            "has no \"days\"",
            "days = \"mon-fri\"",
        ),
        bad(
            window("days = \"funday\"\naction = \"allow\"\n"),
            Some(4),
            Some("windows[0].days"),
            "unknown day \"funday\"",
            "ranges like \"mon-fri\"",
        ),
        bad(
            window(&format!(
                "{ok_window}\n[[windows]]\ndays = \"mon\"\nfrom = \"25:00\"\nto = \"26:00\"\naction = \"deny\"\n"
            )),
            Some(11),
            Some("windows[1].from"),
            "\"25:00\" is not a time",
            "24-hour clock",
        ),
        bad(
            window("days = \"mon\"\nfrom = 9\nto = \"10:00\"\naction = \"deny\"\n"),
            Some(5),
            Some("windows[0].from"),
            "must be a string, found integer",
            "from = \"18:00\"",
        ),
        bad(
            window("days = \"mon\"\nfrom = \"24:00\"\nto = \"10:00\"\naction = \"deny\"\n"),
            Some(5),
            Some("windows[0].from"),
            "\"24:00\" can only end a window",
            "24-hour clock",
        ),
        bad(
            window("days = \"mon\"\nfrom = \"08:00\"\nto = \"08:00\"\naction = \"deny\"\n"),
            Some(6),
            Some("windows[0].to"),
            "from and to are both 08:00, so the window is empty",
            "leave both out",
        ),
        bad(
            window("days = \"mon\"\nfrom = \"08:00\"\naction = \"deny\"\n"),
            Some(5),
            Some("windows[0].to"),
            "has a \"from\" but no \"to\"",
            "to = \"08:00\"",
        ),
        bad(
            window("days = \"mon\"\nto = \"08:00\"\naction = \"deny\"\n"),
            Some(5),
            Some("windows[0].from"),
            "has a \"to\" but no \"from\"",
            "from = \"18:00\"",
        ),
        bad(
            window("days = \"mon\"\n"),
            Some(3),
            Some("windows[0]"),
            "has no action",
            "action = \"allow\", action = \"deny\" or price = 2.0",
        ),
        bad(
            window("days = \"mon\"\naction = \"maybe\"\n"),
            Some(5),
            Some("windows[0].action"),
            "unknown action \"maybe\"",
            "action = \"allow\"",
        ),
        bad(
            window("days = \"mon\"\naction = \"allow\"\nprice = 2.0\n"),
            Some(6),
            Some("windows[0].price"),
            "either action or price, not both",
            "separate window",
        ),
        bad(
            window("days = \"mon\"\nprice = 0.5\n"),
            Some(5),
            Some("windows[0].price"),
            "0.5 is not a price multiplier",
            "at least 1",
        ),
        bad(
            window("days = \"mon\"\nprice = nan\n"),
            Some(5),
            Some("windows[0].price"),
            "is not a price multiplier",
            "at least 1",
        ),
        bad(
            window("days = \"mon\"\nprice = \"2x\"\n"),
            Some(5),
            Some("windows[0].price"),
            "must be a number, found string",
            "price = 2.0",
        ),
    ];
    for c in cases {
        let e = match parse(&c.src) {
            Ok(p) => panic!("{:?} should fail, parsed {p:?}", c.src),
            Err(e) => e,
        };
        let what = format!("{:?}: {e} (hint: {:?})", c.src, e.hint);
        assert_eq!(e.file, path(), "{what}");
        assert_eq!(e.line, c.line, "{what}");
        assert_eq!(e.field.as_deref(), c.field, "{what}");
        assert!(e.message.contains(c.message), "{what}");
        let hint = e.hint.clone().unwrap_or_default();
        assert!(hint.contains(c.hint), "{what}");
        // Messages are lowercase-first and end without a period.
        assert!(!e.message.ends_with('.'), "{what}");
        assert!(!e.message.starts_with(char::is_uppercase), "{what}");
    }
}

#[test]
fn error_display() {
    let e = parse("# a comment\nidle_only = true\nmax_cpu_percent = 150\n").expect_err("bad");
    assert_eq!(
        e.to_string(),
        "policy file /home/mary/.naac/policy.toml: line 3: max_cpu_percent: 150 is out of range"
    );
    let e = parse("idle_onyl = true\n").expect_err("bad");
    assert_eq!(
        e.to_string(),
        "policy file /home/mary/.naac/policy.toml: line 1: unknown key \"idle_onyl\""
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean \"idle_only\"?"));
}

#[test]
fn to_toml_round_trips() {
    let defaults = Policy::default();
    let text = defaults.to_toml();
    assert_eq!(ok(&text), defaults, "{text}");
    // Every key appears, set or as a comment.
    for key in KEYS {
        assert!(text.contains(key), "{key} missing from\n{text}");
    }
    assert!(text.contains("storage_quota = \"10GiB\""), "{text}");
    assert!(text.contains("idle_after = \"5m\""), "{text}");
    assert!(text.contains("# max_slots: not set"), "{text}");

    let full = Policy {
        max_slots: Some(6),
        max_cpu_percent: 75,
        idle_only: false,
        idle_after: Duration::from_millis(5_400_250),
        idle_cpu_percent: 10,
        windows: vec![
            Window {
                days: 0b001_1111,
                from: 18 * 60,
                to: 8 * 60,
                action: WindowAction::Allow,
            },
            Window {
                days: 0b110_0000,
                from: 0,
                to: 1440,
                action: WindowAction::Deny,
            },
            Window {
                days: 0b000_0101,
                from: 17 * 60 + 30,
                to: 21 * 60,
                action: WindowAction::Price(2.75),
            },
            Window {
                days: 0b111_0001,
                from: 1,
                to: 2,
                action: WindowAction::Price(1e6),
            },
        ],
        time_zone: Some("America/New_York".into()),
        max_task_runtime: Some(Duration::from_secs(3 * 86_400 + 1)),
        max_task_memory: Some(1536 << 20),
        storage_quota: 1_000_001,
        storage_dir: Some(PathBuf::from("/srv/naac data/\"quoted\"")),
        min_free_disk: 7,
        allow: vec![peer('A'), peer('B')],
        deny: vec![peer('C')],
        trust_tokens_from: vec![peer('T')],
        min_battery_percent: 0,
        on_ac_only: false,
        min_price: i64::MAX as u64,
        pause_grace: Duration::ZERO,
        min_store_price: 3,
        store_when_paused: false,
        labels: vec!["zone=eu".into(), "ssd".into()],
    };
    let text = full.to_toml();
    assert_eq!(ok(&text), full, "{text}");

    // Values read from a file (rounded to the millisecond, sizes via f64) come back equal.
    let odd = ok(
        "idle_after = \"0.0071s\"\nmax_task_memory = \"1.5GiB\"\nstorage_quota = \"3.3MB\"\n\
         pause_grace = \"1h1m1s1ms\"\n",
    );
    assert_eq!(odd.idle_after, Duration::from_millis(7));
    assert_eq!(ok(&odd.to_toml()), odd);
}

#[test]
fn durations_format_as_they_parse() {
    for (d, text) in [
        (Duration::ZERO, "0s"),
        (Duration::from_millis(250), "250ms"),
        (Duration::from_secs(300), "5m"),
        (Duration::from_secs(5400), "1h30m"),
        (Duration::from_millis(90_061_001), "1d1h1m1s1ms"),
    ] {
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(text), Ok(d));
    }
}

#[test]
fn set_key_keeps_comments_and_layout() {
    let src = "\
# Mary's policy: be gentle with the fan
max_cpu_percent = 50  # half the machine

idle_after = \"10m\"

# no work at weekends
[[windows]]
days = \"sat,sun\"
action = \"deny\"
";
    let out = set_key(src, path(), "max_cpu_percent", "75").expect("set");
    assert_eq!(out, src.replace("= 50  #", "= 75  #"));
    assert_eq!(ok(&out).max_cpu_percent, 75);

    // A new key goes with the others, above the windows, and the comments stay.
    let out = set_key(&out, path(), "on_ac_only", "no").expect("set");
    assert!(
        out.contains("# Mary's policy: be gentle with the fan"),
        "{out}"
    );
    assert!(out.contains("# no work at weekends"), "{out}");
    assert!(
        out.find("on_ac_only = false").expect("added") < out.find("[[windows]]").expect("kept"),
        "{out}"
    );
    let p = ok(&out);
    assert!(!p.on_ac_only);
    assert_eq!(p.windows.len(), 1);

    // Durations and sizes are stored as strings, percent signs are fine.
    let out = set_key(&out, path(), "idle_after", "15m").expect("set");
    assert!(out.contains("idle_after = \"15m\""), "{out}");
    let out = set_key(&out, path(), "max_task_memory", "2GiB").expect("set");
    assert!(out.contains("max_task_memory = \"2GiB\""), "{out}");
    let out = set_key(&out, path(), "idle_cpu_percent", "30%").expect("set");
    let p = ok(&out);
    assert_eq!(p.idle_after, Duration::from_secs(900));
    assert_eq!(p.max_task_memory, Some(2 << 30));
    assert_eq!(p.idle_cpu_percent, 30);

    // Lists from commas.
    let list = format!("{}, {}", peer('A'), peer('B'));
    let out = set_key(&out, path(), "allow", &list).expect("set");
    assert_eq!(ok(&out).allow, [peer('A'), peer('B')]);

    // none and empty go back to the default.
    let out = set_key(&out, path(), "allow", "none").expect("unset");
    assert!(!out.contains("allow"), "{out}");
    let out = set_key(&out, path(), "max_cpu_percent", "").expect("unset");
    assert!(!out.contains("max_cpu_percent"), "{out}");
    assert_eq!(ok(&out).max_cpu_percent, 100);
    assert!(out.contains("# no work at weekends"), "{out}");

    // On an empty file.
    let out = set_key("", path(), "max_slots", "3").expect("set");
    assert_eq!(ok(&out).max_slots, Some(3));
    let out = set_key(&out, path(), "time_zone", "Asia/Tokyo").expect("set");
    assert_eq!(ok(&out).time_zone.as_deref(), Some("Asia/Tokyo"));
}

#[test]
fn set_key_rejects_bad_values_unknown_keys_and_windows() {
    let src = "max_slots = 2\n";
    let e = set_key(src, path(), "max_cpu_pecent", "50").expect_err("unknown");
    assert_eq!(e.message, "unknown key \"max_cpu_pecent\"");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"max_cpu_percent\"?"));

    let e = set_key(src, path(), "windows", "mon-fri").expect_err("windows");
    assert_eq!(e.field.as_deref(), Some("windows"));
    assert_eq!(
        e.hint.as_deref(),
        Some("edit the file: naac policy show --path")
    );

    let e = set_key(src, path(), "idle_only", "maybe").expect_err("bool");
    assert_eq!(e.field.as_deref(), Some("idle_only"));
    assert!(e.message.contains("\"maybe\" is not true or false"), "{e}");

    let e = set_key(src, path(), "max_slots", "lots").expect_err("int");
    assert!(e.message.contains("\"lots\" is not a whole number"), "{e}");
    assert_eq!(e.hint.as_deref(), Some("e.g. 4"));

    let e = set_key(src, path(), "idle_after", "soon").expect_err("duration");
    assert!(e.message.contains("is not a duration"), "{e}");

    // Range checks come from the parser, without a line (the value is new).
    let e = set_key(src, path(), "max_cpu_percent", "150").expect_err("range");
    assert_eq!(e.field.as_deref(), Some("max_cpu_percent"));
    assert_eq!(e.line, None);
    assert!(e.message.contains("150 is out of range"), "{e}");

    let e = set_key(src, path(), "time_zone", "Nowhere/Special").expect_err("zone");
    assert!(e.message.contains("unknown time zone"), "{e}");

    let e = set_key(src, path(), "deny", "12D3KooWshort").expect_err("peer");
    assert_eq!(e.field.as_deref(), Some("deny[0]"));
    assert_eq!(e.line, None);

    // An existing problem elsewhere in the file is reported where it is.
    let e =
        set_key("max_slots = 2\nidle_only = 3\n", path(), "max_slots", "4").expect_err("bad file");
    assert_eq!(e.field.as_deref(), Some("idle_only"));
    assert_eq!(e.line, Some(2));

    // A file that is not TOML.
    let e = set_key("max_slots = = 2\n", path(), "max_slots", "4").expect_err("syntax");
    assert_eq!(e.line, Some(1));
}

#[test]
fn weekday_windows() {
    // 2026-03-09 is a Monday, 2026-03-14 a Saturday.
    let p = windows(
        "[[windows]]\ndays = \"mon-fri\"\nfrom = \"09:00\"\nto = \"17:00\"\naction = \"allow\"\n",
    );
    assert!(allowed(&p, "2026-03-09T09:00:00Z"));
    assert!(allowed(&p, "2026-03-09T16:59:59Z"));
    assert!(!allowed(&p, "2026-03-09T17:00:00Z"));
    assert!(!allowed(&p, "2026-03-09T08:59:00Z"));
    assert!(allowed(&p, "2026-03-13T12:00:00Z"));
    let sat = p.window_state(ts("2026-03-14T12:00:00Z"));
    assert!(!sat.allowed);
    assert_eq!(
        sat.reason.as_deref(),
        Some("outside its allowed hours (mon-fri 09:00-17:00)")
    );
    assert_eq!(sat.price_multiplier, 1.0);
    // Next change: Monday 09:00.
    assert_eq!(sat.next_change, Some(ts("2026-03-16T09:00:00Z")));
    assert_eq!(
        p.window_state(ts("2026-03-09T10:00:00Z")).next_change,
        Some(ts("2026-03-09T17:00:00Z"))
    );
}

#[test]
fn window_crossing_midnight_belongs_to_its_start_day() {
    let p = windows(
        "[[windows]]\ndays = \"fri\"\nfrom = \"22:00\"\nto = \"02:00\"\naction = \"deny\"\n",
    );
    // Friday 2026-03-13.
    assert!(allowed(&p, "2026-03-13T21:59:00Z"));
    assert!(!allowed(&p, "2026-03-13T22:00:00Z"));
    assert!(
        !allowed(&p, "2026-03-14T01:00:00Z"),
        "saturday 01:00 is friday night"
    );
    assert!(allowed(&p, "2026-03-14T02:00:00Z"));
    assert!(
        allowed(&p, "2026-03-14T23:00:00Z"),
        "saturday 23:00 is not friday"
    );
    assert!(
        allowed(&p, "2026-03-13T01:00:00Z"),
        "thursday night is not in it"
    );
    let s = p.window_state(ts("2026-03-14T01:00:00Z"));
    assert_eq!(
        s.reason.as_deref(),
        Some("in a no-work window (fri 22:00-02:00)")
    );
    assert_eq!(s.next_change, Some(ts("2026-03-14T02:00:00Z")));
    assert_eq!(
        p.window_state(ts("2026-03-14T02:00:00Z")).next_change,
        Some(ts("2026-03-20T22:00:00Z"))
    );
}

#[test]
fn window_to_midnight() {
    let p = windows(
        "[[windows]]\ndays = \"sat,sun\"\nfrom = \"00:00\"\nto = \"24:00\"\naction = \"deny\"\n",
    );
    assert!(allowed(&p, "2026-03-13T23:59:59Z"));
    assert!(!allowed(&p, "2026-03-14T00:00:00Z"));
    let sun = p.window_state(ts("2026-03-15T23:59:00Z"));
    assert!(!sun.allowed);
    assert_eq!(
        sun.reason.as_deref(),
        Some("in a no-work window (sat,sun 00:00-24:00)")
    );
    // Saturday into Sunday is no change; Monday 00:00 is.
    assert_eq!(
        p.window_state(ts("2026-03-14T12:00:00Z")).next_change,
        Some(ts("2026-03-16T00:00:00Z"))
    );
    assert!(allowed(&p, "2026-03-16T00:00:00Z"));
}

#[test]
fn allow_windows_exclude_everything_else_and_deny_overrides() {
    let p = windows(
        "[[windows]]\ndays = \"mon-fri\"\nfrom = \"18:00\"\nto = \"08:00\"\naction = \"allow\"\n\
         [[windows]]\ndays = \"sat,sun\"\naction = \"allow\"\n\
         [[windows]]\ndays = \"wed\"\nfrom = \"19:00\"\nto = \"20:00\"\naction = \"deny\"\n",
    );
    assert!(!allowed(&p, "2026-03-09T12:00:00Z"), "monday noon");
    assert!(allowed(&p, "2026-03-09T18:30:00Z"), "monday evening");
    assert!(
        allowed(&p, "2026-03-10T07:59:00Z"),
        "tuesday early, from monday"
    );
    assert!(allowed(&p, "2026-03-14T12:00:00Z"), "saturday");
    assert!(
        !allowed(&p, "2026-03-09T07:00:00Z"),
        "monday early: sunday night is not mon-fri, and sunday ended at midnight"
    );
    assert!(
        allowed(&p, "2026-03-14T07:00:00Z"),
        "saturday early, from friday and saturday"
    );
    let s = p.window_state(ts("2026-03-09T12:00:00Z"));
    assert_eq!(
        s.reason.as_deref(),
        Some("outside its allowed hours (mon-fri 18:00-08:00, sat,sun 00:00-24:00)")
    );
    // Wednesday 19:30: inside an allow window but the deny window wins.
    let s = p.window_state(ts("2026-03-11T19:30:00Z"));
    assert!(!s.allowed);
    assert_eq!(
        s.reason.as_deref(),
        Some("in a no-work window (wed 19:00-20:00)")
    );
    assert_eq!(s.next_change, Some(ts("2026-03-11T20:00:00Z")));
    assert!(allowed(&p, "2026-03-11T20:00:00Z"));
    // Only deny windows: everything else is allowed.
    let deny_only = windows(
        "[[windows]]\ndays = \"mon\"\nfrom = \"09:00\"\nto = \"10:00\"\naction = \"deny\"\n",
    );
    assert!(allowed(&deny_only, "2026-03-10T09:30:00Z"));
    assert!(!allowed(&deny_only, "2026-03-09T09:30:00Z"));
}

#[test]
fn price_is_the_largest_matching_multiplier() {
    let p = windows(
        "[[windows]]\ndays = \"daily\"\nfrom = \"17:00\"\nto = \"21:00\"\nprice = 2\n\
         [[windows]]\ndays = \"fri\"\nfrom = \"18:00\"\nto = \"20:00\"\nprice = 3.5\n",
    );
    let at = |t: &str| p.window_state(ts(t));
    assert_eq!(at("2026-03-13T16:00:00Z").price_multiplier, 1.0);
    assert_eq!(at("2026-03-13T17:30:00Z").price_multiplier, 2.0);
    assert_eq!(at("2026-03-13T19:00:00Z").price_multiplier, 3.5);
    assert_eq!(at("2026-03-12T19:00:00Z").price_multiplier, 2.0, "thursday");
    assert_eq!(at("2026-03-13T22:00:00Z").price_multiplier, 1.0);
    // Price windows alone never forbid work.
    assert!(at("2026-03-13T19:00:00Z").allowed);
    // The multiplier's changes are changes too.
    assert_eq!(
        at("2026-03-13T16:00:00Z").next_change,
        Some(ts("2026-03-13T17:00:00Z"))
    );
    assert_eq!(
        at("2026-03-13T17:30:00Z").next_change,
        Some(ts("2026-03-13T18:00:00Z"))
    );
    assert_eq!(
        at("2026-03-13T19:00:00Z").next_change,
        Some(ts("2026-03-13T20:00:00Z"))
    );
}

#[test]
fn next_change_none_without_windows_or_changes() {
    let p = windows("");
    let s = p.window_state(ts("2026-03-13T16:00:00Z"));
    assert_eq!(
        s,
        WindowState {
            allowed: true,
            price_multiplier: 1.0,
            reason: None,
            next_change: None
        }
    );
    let always = windows("[[windows]]\ndays = \"daily\"\naction = \"allow\"\n");
    let s = always.window_state(ts("2026-03-13T16:00:00Z"));
    assert!(s.allowed);
    assert_eq!(s.next_change, None);
    // A change more than 8 days ahead is not found... but a weekly one always is.
    let weekly = windows(
        "[[windows]]\ndays = \"mon\"\nfrom = \"09:00\"\nto = \"10:00\"\naction = \"deny\"\n",
    );
    assert_eq!(
        weekly.window_state(ts("2026-03-09T10:00:00Z")).next_change,
        Some(ts("2026-03-16T09:00:00Z"))
    );
}

fn new_york(tables: &str) -> Policy {
    ok(&format!("time_zone = \"America/New_York\"\n{tables}"))
}

#[test]
fn windows_hold_by_civil_time_across_spring_forward() {
    assert!(TimeZone::get("America/New_York").is_ok(), "tzdb present");
    let p = new_york(
        "[[windows]]\ndays = \"daily\"\nfrom = \"01:00\"\nto = \"03:00\"\naction = \"allow\"\n",
    );
    // 2026-03-08: at 02:00 EST the clocks jump to 03:00 EDT.
    assert!(!allowed(&p, "2026-03-08T05:59:00Z"), "00:59 EST");
    assert!(allowed(&p, "2026-03-08T06:00:00Z"), "01:00 EST");
    let inside = p.window_state(ts("2026-03-08T06:30:00Z"));
    assert!(inside.allowed, "01:30 EST");
    // The window ends at the jump: 01:59:59 EST is followed by 03:00 EDT.
    assert_eq!(inside.next_change, Some(ts("2026-03-08T07:00:00Z")));
    assert!(allowed(&p, "2026-03-08T06:59:59Z"));
    assert!(!allowed(&p, "2026-03-08T07:00:00Z"), "03:00 EDT");
    let after = p.window_state(ts("2026-03-08T07:30:00Z"));
    assert!(!after.allowed, "03:30 EDT");
    // Next night at 01:00 EDT = 05:00Z (not 06:00Z as in winter).
    assert_eq!(after.next_change, Some(ts("2026-03-09T05:00:00Z")));
    assert!(allowed(&p, "2026-03-09T05:00:00Z"));
    assert!(!allowed(&p, "2026-03-09T04:59:00Z"));

    // A window inside the skipped hour never happens that night.
    let gap = new_york(
        "[[windows]]\ndays = \"sun\"\nfrom = \"02:00\"\nto = \"02:30\"\naction = \"deny\"\n",
    );
    for t in [
        "2026-03-08T06:59:00Z",
        "2026-03-08T07:00:00Z",
        "2026-03-08T07:15:00Z",
    ] {
        assert!(allowed(&gap, t), "{t}");
    }
    assert_eq!(
        gap.window_state(ts("2026-03-08T06:00:00Z")).next_change,
        Some(ts("2026-03-15T06:00:00Z")),
        "next sunday 02:00 EDT"
    );
}

#[test]
fn windows_hold_by_civil_time_across_fall_back() {
    let p = new_york(
        "[[windows]]\ndays = \"daily\"\nfrom = \"01:00\"\nto = \"03:00\"\naction = \"allow\"\n",
    );
    // 2026-11-01: at 02:00 EDT the clocks go back to 01:00 EST; 01:00-02:00 happens twice.
    assert!(!allowed(&p, "2026-11-01T04:59:00Z"), "00:59 EDT");
    let first = p.window_state(ts("2026-11-01T05:30:00Z"));
    assert!(first.allowed, "01:30 EDT");
    assert!(allowed(&p, "2026-11-01T06:30:00Z"), "01:30 EST");
    assert!(allowed(&p, "2026-11-01T07:30:00Z"), "02:30 EST");
    // Three hours long tonight: it ends at 03:00 EST = 08:00Z.
    assert_eq!(first.next_change, Some(ts("2026-11-01T08:00:00Z")));
    assert!(!allowed(&p, "2026-11-01T08:00:00Z"));
    assert_eq!(
        p.window_state(ts("2026-11-01T08:00:00Z")).next_change,
        Some(ts("2026-11-02T06:00:00Z")),
        "01:00 EST"
    );

    // A window inside the repeated hour happens twice.
    let twice = new_york(
        "[[windows]]\ndays = \"sun\"\nfrom = \"01:30\"\nto = \"02:00\"\naction = \"deny\"\n",
    );
    let s = twice.window_state(ts("2026-11-01T05:45:00Z"));
    assert!(!s.allowed, "01:45 EDT");
    assert_eq!(
        s.next_change,
        Some(ts("2026-11-01T06:00:00Z")),
        "back to 01:00 EST"
    );
    let s = twice.window_state(ts("2026-11-01T06:00:00Z"));
    assert!(s.allowed, "01:00 EST");
    assert_eq!(
        s.next_change,
        Some(ts("2026-11-01T06:30:00Z")),
        "01:30 EST again"
    );
    let s = twice.window_state(ts("2026-11-01T06:30:00Z"));
    assert!(!s.allowed, "01:30 EST");
    assert_eq!(s.next_change, Some(ts("2026-11-01T07:00:00Z")), "02:00 EST");
}

#[test]
fn policy_tz_defaults_to_the_system_zone() {
    let p = Policy::default();
    let system = TimeZone::try_system().unwrap_or(TimeZone::UTC);
    let t = ts("2026-07-01T12:00:00Z");
    assert_eq!(p.tz().to_offset(t), system.to_offset(t));
    let ny = new_york("");
    assert_eq!(ny.tz().to_offset(t).seconds(), -4 * 3600);
}

fn idle_facts() -> Facts {
    Facts {
        now: ts("2026-03-09T12:00:00Z"),
        owner_idle_for: Some(Duration::from_secs(600)),
        on_ac: Some(true),
        battery_percent: None,
        storage_used: 0,
        disk_free: None,
        manual_pause: None,
    }
}

fn reasons(p: &Policy, f: &Facts) -> Vec<PauseReason> {
    let d = p.evaluate(f);
    assert_eq!(d.accept, d.reasons.is_empty());
    d.reasons
}

#[test]
fn evaluate_accepts_when_nothing_is_in_the_way() {
    let p = Policy::default();
    let d = p.evaluate(&idle_facts());
    assert!(d.accept);
    assert!(d.reasons.is_empty());
    assert_eq!(d.price_multiplier, 1.0);
    assert_eq!(d.host_state(), HostState::Accepting);
    // Unknown power facts never pause.
    let f = Facts {
        on_ac: None,
        battery_percent: None,
        ..idle_facts()
    };
    assert!(p.evaluate(&f).accept);
}

#[test]
fn evaluate_manual_pause() {
    let p = Policy::default();
    let f = Facts {
        manual_pause: Some(None),
        ..idle_facts()
    };
    assert_eq!(reasons(&p, &f), [PauseReason::Manual { until: None }]);
    assert_eq!(reasons(&p, &f)[0].to_string(), "paused by its owner");

    let later = idle_facts().now + SignedDuration::from_hours(1);
    let f = Facts {
        manual_pause: Some(Some(later)),
        ..idle_facts()
    };
    assert_eq!(
        reasons(&p, &f),
        [PauseReason::Manual { until: Some(later) }]
    );
    // A pause that is over does not count.
    let f = Facts {
        manual_pause: Some(Some(idle_facts().now)),
        ..idle_facts()
    };
    assert!(p.evaluate(&f).accept);

    // Shown in this machine's zone; soon: the time only.
    let soon = Timestamp::now() + SignedDuration::from_hours(1);
    let local = soon.to_zoned(TimeZone::system());
    assert_eq!(
        PauseReason::Manual { until: Some(soon) }.to_string(),
        format!("paused by its owner until {}", local.strftime("%H:%M"))
    );
    let far = Timestamp::now() + SignedDuration::from_hours(72);
    let local = far.to_zoned(TimeZone::system());
    assert_eq!(
        PauseReason::Manual { until: Some(far) }.to_string(),
        format!(
            "paused by its owner until {}",
            local.strftime("%Y-%m-%d %H:%M")
        )
    );
}

#[test]
fn evaluate_owner_activity() {
    let p = Policy::default();
    let active = Facts {
        owner_idle_for: None,
        ..idle_facts()
    };
    let r = reasons(&p, &active);
    assert_eq!(
        r,
        [PauseReason::OwnerActive {
            idle_for: None,
            needed: Duration::from_secs(300)
        }]
    );
    assert_eq!(r[0].to_string(), "owner active");

    let briefly = Facts {
        owner_idle_for: Some(Duration::from_millis(61_500)),
        ..idle_facts()
    };
    let r = reasons(&p, &briefly);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].to_string(), "owner idle 1m1s of the 5m it needs");
    // Exactly long enough.
    let enough = Facts {
        owner_idle_for: Some(Duration::from_secs(300)),
        ..idle_facts()
    };
    assert!(p.evaluate(&enough).accept);

    // Not idle-only: the owner's activity does not matter.
    let always = ok("idle_only = false\n");
    assert!(always.evaluate(&active).accept);
}

#[test]
fn evaluate_windows() {
    let p = windows(
        "[[windows]]\ndays = \"mon-fri\"\nfrom = \"18:00\"\nto = \"08:00\"\naction = \"allow\"\n\
         [[windows]]\ndays = \"daily\"\nfrom = \"18:00\"\nto = \"20:00\"\nprice = 1.5\n",
    );
    let noon = idle_facts();
    let r = reasons(&p, &noon);
    assert_eq!(
        r,
        [PauseReason::Window(
            "outside its allowed hours (mon-fri 18:00-08:00)".into()
        )]
    );
    assert_eq!(
        r[0].to_string(),
        "outside its allowed hours (mon-fri 18:00-08:00)"
    );
    let evening = Facts {
        now: ts("2026-03-09T19:00:00Z"),
        ..idle_facts()
    };
    let d = p.evaluate(&evening);
    assert!(d.accept);
    assert_eq!(d.price_multiplier, 1.5);
}

#[test]
fn evaluate_power() {
    let p = Policy::default();
    let on_battery = Facts {
        on_ac: Some(false),
        battery_percent: Some(80),
        ..idle_facts()
    };
    let r = reasons(&p, &on_battery);
    assert_eq!(r, [PauseReason::OnBattery]);
    assert_eq!(r[0].to_string(), "on battery");

    let battery_ok = ok("on_ac_only = false\n");
    assert!(battery_ok.evaluate(&on_battery).accept);
    let low = Facts {
        battery_percent: Some(15),
        ..on_battery.clone()
    };
    let r = reasons(&battery_ok, &low);
    assert_eq!(
        r,
        [PauseReason::BatteryLow {
            percent: 15,
            min: 20
        }]
    );
    assert_eq!(r[0].to_string(), "battery 15% < 20%");
    // Both when on battery, low, and AC is required.
    assert_eq!(
        reasons(&p, &low),
        [
            PauseReason::OnBattery,
            PauseReason::BatteryLow {
                percent: 15,
                min: 20
            }
        ]
    );
    // Low but charging: fine. Low with unknown power source: counts.
    let charging = Facts {
        on_ac: Some(true),
        ..low.clone()
    };
    assert!(battery_ok.evaluate(&charging).accept);
    let unknown = Facts {
        on_ac: None,
        ..low.clone()
    };
    assert_eq!(
        reasons(&p, &unknown),
        [PauseReason::BatteryLow {
            percent: 15,
            min: 20
        }]
    );
    // 20% is not below 20%.
    let at_min = Facts {
        battery_percent: Some(20),
        ..unknown
    };
    assert!(p.evaluate(&at_min).accept);
}

#[test]
fn evaluate_storage_quota() {
    let p = Policy::default();
    let full = Facts {
        storage_used: 10 << 30,
        ..idle_facts()
    };
    let r = reasons(&p, &full);
    assert_eq!(
        r,
        [PauseReason::StorageQuota {
            used: 10 << 30,
            quota: 10 << 30
        }]
    );
    assert_eq!(r[0].to_string(), "storage quota full (10 GiB of 10 GiB)");
    let almost = Facts {
        storage_used: (10 << 30) - 1,
        ..idle_facts()
    };
    assert!(p.evaluate(&almost).accept);
}

#[test]
fn evaluate_disk_nearly_full() {
    let p = Policy::default();
    let low = Facts {
        disk_free: Some((1 << 30) - 1),
        ..idle_facts()
    };
    let r = reasons(&p, &low);
    assert_eq!(
        r,
        [PauseReason::DiskLow {
            free: (1 << 30) - 1,
            floor: 1 << 30
        }]
    );
    assert!(
        r[0].to_string().starts_with("disk nearly full ("),
        "{}",
        r[0]
    );
    let enough = Facts {
        disk_free: Some(1 << 30),
        ..idle_facts()
    };
    assert!(p.evaluate(&enough).accept);
    let p = Policy::parse(Path::new("policy.toml"), "min_free_disk = \"10GiB\"\n").expect("parse");
    assert_eq!(p.min_free_disk, 10 << 30);
    assert!(!p.evaluate(&enough).accept);
    let off = Policy::parse(Path::new("policy.toml"), "min_free_disk = 0\n").expect("parse");
    let empty = Facts {
        disk_free: Some(0),
        ..idle_facts()
    };
    assert!(off.evaluate(&empty).accept, "0 turns the floor off");
    assert!(Policy::parse(Path::new("policy.toml"), "storage_quota = 0\n").is_err());
}

#[test]
fn evaluate_lists_every_reason_in_order() {
    let p = windows("[[windows]]\ndays = \"sat,sun\"\naction = \"deny\"\n");
    let f = Facts {
        now: ts("2026-03-14T12:00:00Z"),
        owner_idle_for: None,
        on_ac: Some(false),
        battery_percent: Some(5),
        storage_used: 11 << 30,
        disk_free: Some(100 << 20),
        manual_pause: Some(None),
    };
    let d = p.evaluate(&f);
    assert!(!d.accept);
    let text: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "paused by its owner",
            "owner active",
            "in a no-work window (sat,sun 00:00-24:00)",
            "on battery",
            "battery 5% < 20%",
            "storage quota full (11 GiB of 10 GiB)",
            "disk nearly full (100 MiB free < 1 GiB)",
        ]
    );
    assert_eq!(d.host_state(), HostState::Paused(text.join(", ")),);
}

#[test]
fn peer_access_allow_and_deny() {
    let (a, b, c, u) = (peer('A'), peer('B'), peer('C'), peer('U'));
    let open = Policy::default();
    assert_eq!(open.peer_access(&a, None, None), Ok(()));

    let deny = Policy {
        deny: vec![b.clone(), u.clone()],
        ..Policy::default()
    };
    assert_eq!(deny.peer_access(&a, None, None), Ok(()));
    assert_eq!(
        deny.peer_access(&b, None, None),
        Err("you are on its deny list".into())
    );
    // The attested user is checked too.
    assert_eq!(
        deny.peer_access(&a, Some(&u), None),
        Err("you are on its deny list".into())
    );

    let allow = Policy {
        allow: vec![a.clone(), u.clone()],
        deny: vec![c.clone()],
        ..Policy::default()
    };
    assert_eq!(allow.peer_access(&a, None, None), Ok(()));
    assert_eq!(
        allow.peer_access(&b, None, None),
        Err("you are not on its allow list".into())
    );
    // A throwaway session id with an allowed user id is allowed.
    assert_eq!(allow.peer_access(&b, Some(&u), None), Ok(()));
    // Deny wins, whether by peer or by user.
    assert_eq!(
        allow.peer_access(&c, Some(&u), None),
        Err("you are on its deny list".into())
    );
    let both = Policy {
        allow: vec![a.clone()],
        deny: vec![a.clone()],
        ..Policy::default()
    };
    assert_eq!(
        both.peer_access(&a, None, None),
        Err("you are on its deny list".into())
    );
}

#[test]
fn a_trusted_token_is_an_alternative_to_the_allow_list() {
    let (a, b, u, alice) = (peer('A'), peer('B'), peer('U'), peer('L'));
    let trusting = Policy {
        trust_tokens_from: vec![alice.clone()],
        deny: vec![b.clone()],
        ..Policy::default()
    };
    // Trusting a root closes the machine to requesters without a token.
    let e = trusting.peer_access(&a, None, None).expect_err("no token");
    assert!(e.contains("no token"), "{e}");
    assert_eq!(trusting.peer_access(&a, Some(&u), Some(Ok(()))), Ok(()));
    let e = trusting
        .peer_access(&a, Some(&u), Some(Err("`check if slots($n)`".into())))
        .expect_err("a failing token");
    assert!(
        e.contains("your token does not let you in: `check if slots"),
        "{e}"
    );
    // Deny still wins over a token.
    assert!(trusting.peer_access(&b, None, Some(Ok(()))).is_err());
    // A token counts for nothing where no root is trusted.
    let allow = Policy {
        allow: vec![u.clone()],
        ..Policy::default()
    };
    assert!(allow.peer_access(&a, None, Some(Ok(()))).is_err());
    assert_eq!(allow.peer_access(&a, Some(&u), None), Ok(()));
}

#[test]
fn windows_and_peer_lists_are_bounded() {
    let one = "[[windows]]\ndays = \"mon\"\naction = \"deny\"\n";
    assert_eq!(ok(&one.repeat(MAX_WINDOWS)).windows.len(), MAX_WINDOWS);
    let e = parse(&one.repeat(MAX_WINDOWS + 1)).expect_err("too many windows");
    assert_eq!(e.field.as_deref(), Some("windows"));
    assert!(e.message.contains("more than 100"), "{e}");

    let ids = vec![format!("\"{}\"", peer('A')); MAX_PEERS + 1].join(",");
    let e = parse(&format!("deny = [{ids}]\n")).expect_err("too many peers");
    assert_eq!(e.field.as_deref(), Some("deny"));
    assert!(e.message.contains("more than 10000"), "{e}");
}
