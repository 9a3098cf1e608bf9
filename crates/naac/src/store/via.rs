//! `naac store get|put --via ADDR`: a file of someone's stored data read, or stored in their
//! name, through their node's API (`/v1/store`) with the data token they gave you; your user
//! key proves you hold it. Their node checks the token with the exact file path.

use anyhow::Context as _;
use naac_node::Home;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The API client for `addr` with data token `token`, and this user's key to prove holding it.
fn client(
    home: &Home,
    addr: &str,
    token: Option<&str>,
) -> anyhow::Result<(naac_api::client::Client, naac_net::Keypair)> {
    let token = token.context(
        "--via needs --token TOKEN: a data token from the node's user (`naac token mint data --to YOU`)",
    )?;
    let token = crate::token::read(token)?;
    let user = super::user_key(home)?;
    Ok((naac_api::client::Client::new(addr, &token), user))
}

/// Reads `naac://ID/PATH` through the node at `addr` into `out` (default: the file's name).
pub async fn get(
    home: &Home,
    addr: &str,
    token: Option<&str>,
    url: &str,
    out: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (id, path) = naac_node::store::parse_url(url)?;
    let path = path.with_context(|| {
        format!("{url}: name one file (naac://ID/PATH) to read through a node's API")
    })?;
    let out = out.unwrap_or_else(|| PathBuf::from(path.rsplit('/').next().unwrap_or(&path)));
    anyhow::ensure!(
        !out.exists(),
        "{} already exists; name a new path with -o",
        out.display()
    );
    let (api, user) = client(home, addr, token)?;
    let key = naac_net::ed25519_of_keypair(&user).context("the user key is not ed25519")?;
    let sign = |m: &[u8]| naac_net::sign(&user, m);
    let bytes = api
        .read_data(&id.to_hex(), &path, Some((&key, &sign)))
        .await?;
    std::fs::write(&out, &bytes).with_context(|| format!("write {}", out.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"id": format!("naac://{id}"), "path": path, "bytes": bytes.len()})
        );
    } else {
        eprintln!(
            "{} into {}",
            naac_types::units::format_size(bytes.len() as u64),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Stores the file `file` as `at` (default: its name) in the name of the node's user at `addr`.
pub async fn put(
    home: &Home,
    addr: &str,
    token: Option<&str>,
    file: &Path,
    at: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        file.is_file(),
        "{}: --via stores one file (a directory goes with `naac store put` on your own name)",
        file.display()
    );
    let at = match at {
        Some(a) => a,
        None => file
            .file_name()
            .and_then(|n| n.to_str())
            .context("the file's name is not UTF-8; name it with --as")?
            .to_string(),
    };
    let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
    let (api, user) = client(home, addr, token)?;
    let key = naac_net::ed25519_of_keypair(&user).context("the user key is not ed25519")?;
    let sign = |m: &[u8]| naac_net::sign(&user, m);
    let v = api.write_data(&at, bytes, Some((&key, &sign))).await?;
    if json {
        println!("{v}");
    } else {
        println!("{}", v["id"].as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}
