//! `naac policy show | set | check` and `naac pause` / `naac resume`: the owner's rules for
//! this machine. A running node reloads the file within a second of a change.

use anyhow::Context as _;
use clap::Subcommand;
use naac_node::Home;
use naac_types::policy::{Facts, Policy};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum Cmd {
    /// Print the effective policy (every key, defaults filled in)
    Show {
        /// Print the policy file's path only
        #[arg(long)]
        path: bool,
        /// Print one JSON object instead of TOML
        #[arg(long)]
        json: bool,
    },
    /// Set one key, e.g. `naac policy set max_cpu_percent 50` or `set idle_only false`;
    /// VALUE `none` removes the key (back to its default). Comments in the file are kept.
    Set { key: String, value: String },
    /// Check a policy file (default: this node's) and say whether it lets work run now
    Check {
        /// The file to check [default: the data dir's policy.toml]
        file: Option<PathBuf>,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn main(cmd: Cmd) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    match cmd {
        Cmd::Show { path, json } => {
            let file = home.policy();
            if path {
                println!("{}", file.display());
                return Ok(ExitCode::SUCCESS);
            }
            let policy = match Policy::load(&file) {
                Ok(p) => p,
                Err(e) => return Ok(invalid(e)),
            };
            if json {
                println!("{}", policy_json(&policy, &file)?);
            } else {
                let source = if file.exists() {
                    format!("# {}", file.display())
                } else {
                    format!(
                        "# {} does not exist: these are the defaults",
                        file.display()
                    )
                };
                println!("{source}\n{}", policy.to_toml());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Set { key, value } => {
            home.ensure()?;
            let file = home.policy();
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e).with_context(|| format!("read {}", file.display())),
            };
            let new = match naac_types::policy::set_key(&text, &file, &key, &value) {
                Ok(t) => t,
                Err(e) => return Ok(invalid(e)),
            };
            write_atomic(&file, &new)?;
            eprintln!(
                "naac: {key} set in {} (a running node applies it within a second)",
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { file, json } => {
            let file = file.unwrap_or_else(|| home.policy());
            let policy = match Policy::load(&file) {
                Ok(p) => p,
                Err(e) => return Ok(invalid(e)),
            };
            let power =
                naac_node::device::probe_power(std::path::Path::new("/sys/class/power_supply"));
            let work = match &policy.storage_dir {
                Some(d) => d.join("work"),
                None => home.work(),
            };
            let storage = naac_node::owner::dir_size(&work, 100_000)
                + naac_node::owner::dir_size(&home.module_cache(), 100_000);
            let free = [&work, &home.module_cache()]
                .into_iter()
                .map(|d| naac_node::device::probe_disk(d))
                .filter(|d| d.total > 0)
                .map(|d| d.free)
                .min();
            let now = jiff::Timestamp::now();
            // Owner activity is watched by the running node; here it is taken as away.
            let facts = Facts {
                now,
                owner_idle_for: Some(Duration::from_secs(u64::MAX / 4)),
                on_ac: power.on_ac,
                battery_percent: power.battery_percent,
                storage_used: storage,
                disk_free: free,
                manual_pause: naac_node::owner::manual_pause(&home.pause_file()),
            };
            let d = policy.evaluate(&facts);
            let w = policy.window_state(now);
            let reasons: Vec<String> = d.reasons.iter().map(|r| r.to_string()).collect();
            let next = w.next_change.map(|t| {
                t.to_zoned(policy.tz())
                    .strftime("%a %Y-%m-%d %H:%M %Z")
                    .to_string()
            });
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "file": file,
                        "valid": true,
                        "accepting": d.accept,
                        "reasons": reasons,
                        "price_multiplier": d.price_multiplier,
                        "next_window_change": next,
                        "idle_only": policy.idle_only,
                    })
                );
            } else {
                println!("{}: valid", file.display());
                if d.accept {
                    println!("work may run now (price ×{})", d.price_multiplier);
                } else {
                    println!("work is paused now: {}", reasons.join("; "));
                }
                if let Some(n) = next {
                    println!("the time windows change next at {n}");
                }
                if policy.idle_only {
                    println!(
                        "idle_only: work also waits until the owner has been away for {}",
                        naac_node::explain::human(policy.idle_after)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn invalid(e: naac_types::policy::PolicyError) -> ExitCode {
    match &e.hint {
        Some(h) => eprintln!("error: {e}\nhint: {h}"),
        None => eprintln!("error: {e}"),
    }
    ExitCode::from(2)
}

/// Replaces the policy file at once: a node reading it sees the old or the new text.
pub fn write_atomic(file: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = file.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("replace {}", file.display()))
}

pub fn policy_json(policy: &Policy, file: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let table: toml::Table = toml::from_str(&policy.to_toml()).context("encode the policy")?;
    let mut v = serde_json::to_value(table).context("encode the policy")?;
    v["file"] = file.display().to_string().into();
    Ok(v)
}

#[derive(clap::Args)]
pub struct PauseArgs {
    /// Pause for this long only, e.g. 30m or 2h [default: until `naac resume`]
    #[arg(long = "for", value_name = "DURATION", value_parser = crate::run::parse_duration)]
    duration: Option<Duration>,
}

/// `naac pause`: running tasks stop within a second and resume later where they were.
pub async fn pause(a: PauseArgs) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    let until = match a.duration {
        Some(d) => Some(
            jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::try_from(d).context("pause duration")?)
                .context("pause duration is too long")?,
        ),
        None => None,
    };
    naac_node::owner::pause(&home, until)?;
    match until {
        Some(t) => eprintln!(
            "naac: paused until {} (tasks held longer than the policy's pause_grace go back to their requesters)",
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%H:%M %Z")
        ),
        None => eprintln!("naac: paused until `naac resume`"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `naac resume`: ends a pause made with `naac pause`.
pub async fn resume() -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    if naac_node::owner::resume(&home)? {
        eprintln!("naac: resumed");
    } else {
        eprintln!("naac: was not paused by hand (see `naac policy check` for other reasons)");
    }
    Ok(ExitCode::SUCCESS)
}
