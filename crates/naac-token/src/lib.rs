//! naac's tokens: biscuits rooted in a naac ed25519 key, with one vocabulary of facts and
//! checks that every verifier shares.
//!
//! A node mints an *admin* token with its identity key (no checks: it may do anything on
//! that node's API). Anyone holding a token can attenuate it offline ([`attenuate`]) by
//! appending a block of checks; nobody can remove one. The node verifies a token against
//! its public key and runs the checks under explicit limits ([`LIMITS`]).
//!
//! The verifier states, for each request:
//!
//! | fact | meaning |
//! | --- | --- |
//! | `operation($op)` | `"read"` (every `GET`), `"submit"`, `"cancel"`, or `"admin"` (changing the node: its policy) |
//! | `time($t)` | now |
//! | `job_name($n)` | the job submitted or cancelled |
//!
//! and attenuation blocks say, with checks over those facts:
//!
//! | limit | check |
//! | --- | --- |
//! | scope `read` | `check if operation("read")` |
//! | scope `submit` | `check if operation($op), $op == "read" \|\| $op == "submit" \|\| $op == "cancel"` |
//! | expiry | `check if time($t), $t <= EXPIRY` |
//! | job name prefix `P` | `check if operation("read") or job_name($n), $n.starts_with("P")` |
//!
//! A token with a job-name prefix reads every job but submits and cancels only jobs whose
//! name starts with the prefix.

use biscuit_auth::builder::Term;
use biscuit_auth::{Biscuit, BlockBuilder, KeyPair, PrivateKey, PublicKey, UnverifiedBiscuit};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The Datalog run limits every verification uses, set explicitly so that a valid token
/// is never refused by a default tuned for a faster machine: a token's checks are a few
/// lines; a token that needs more is hostile.
pub const LIMITS: biscuit_auth::AuthorizerLimits = biscuit_auth::AuthorizerLimits {
    max_facts: 1_000,
    max_iterations: 100,
    max_time: Duration::from_millis(50),
};

/// The longest token accepted (bytes of base64): a hostile client cannot make the node
/// parse megabytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Most blocks in a token (its authority block and attenuations).
pub const MAX_BLOCKS: usize = 32;

/// What a token may be limited to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Look only: every `GET`.
    Read,
    /// Read, submit jobs and cancel them.
    Submit,
    /// Everything, the node's policy included.
    Admin,
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Scope::Read),
            "submit" => Ok(Scope::Submit),
            "admin" => Ok(Scope::Admin),
            _ => Err(format!("unknown scope {s:?}: use read, submit or admin")),
        }
    }
}

/// What a request does, as the verifier states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Read,
    Submit,
    Cancel,
    Admin,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Submit => "submit",
            Operation::Cancel => "cancel",
            Operation::Admin => "admin",
        }
    }
}

/// How a token falls short.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token, not signed by this node's key, or too big.
    #[error("{0}")]
    Invalid(String),
    /// A valid token whose checks refuse this request (which check, in its own words).
    #[error("{0}")]
    Denied(String),
}

/// A node's root: mints admin tokens and verifies any token made from them.
pub struct Root {
    key: KeyPair,
}

impl Root {
    /// The root of the ed25519 secret key `secret` (a node's identity key).
    pub fn from_ed25519(secret: &[u8; 32]) -> Result<Root, TokenError> {
        let private = PrivateKey::from_bytes(secret, biscuit_auth::Algorithm::Ed25519)
            .map_err(|e| TokenError::Invalid(format!("the root key: {e}")))?;
        Ok(Root {
            key: KeyPair::from(&private),
        })
    }

    /// A token that may do anything on this node's API, naming `node` (the node's id).
    pub fn mint_admin(&self, node: &str) -> Result<String, TokenError> {
        let mut params = HashMap::new();
        params.insert("node".to_string(), Term::Str(node.to_string()));
        let b = Biscuit::builder()
            .code_with_params("node({node});", params, HashMap::new())
            .and_then(|b| b.build(&self.key))
            .and_then(|b| b.to_base64())
            .map_err(|e| TokenError::Invalid(format!("mint a token: {e}")))?;
        Ok(b)
    }

    pub fn verifier(&self) -> Verifier {
        Verifier {
            key: self.key.public(),
        }
    }
}

/// Checks tokens against a node's public key.
#[derive(Clone)]
pub struct Verifier {
    key: PublicKey,
}

/// A token whose signatures hold.
pub struct Token(Biscuit);

impl Verifier {
    /// Parses `token` and checks every block's signature chains to this node's key.
    pub fn verify(&self, token: &str) -> Result<Token, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid(format!(
                "the token is {} bytes; at most {MAX_TOKEN_LEN} are accepted",
                token.len()
            )));
        }
        let b = Biscuit::from_base64(token.trim(), self.key)
            .map_err(|e| TokenError::Invalid(format!("not a token of this node ({e})")))?;
        if b.block_count() > MAX_BLOCKS {
            return Err(TokenError::Invalid(format!(
                "the token has {} blocks; at most {MAX_BLOCKS} are accepted",
                b.block_count()
            )));
        }
        Ok(Token(b))
    }
}

impl Token {
    /// Runs the token's checks for `op` (on the job named `job_name`, if any) at `now`.
    pub fn authorize(
        &self,
        op: Operation,
        job_name: Option<&str>,
        now: SystemTime,
    ) -> Result<(), TokenError> {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut params = HashMap::new();
        params.insert("op".to_string(), Term::Str(op.as_str().into()));
        params.insert("now".to_string(), Term::Date(secs));
        let mut code = String::from("operation({op}); time({now});");
        if let Some(n) = job_name {
            params.insert("name".to_string(), Term::Str(n.into()));
            code.push_str(" job_name({name});");
        }
        code.push_str(" allow if true;");
        let mut a = biscuit_auth::AuthorizerBuilder::new()
            .code_with_params(code, params, HashMap::new())
            .map(|a| a.set_limits(LIMITS))
            .and_then(|a| a.build(&self.0))
            .map_err(|e| TokenError::Invalid(format!("the token's checks cannot run: {e}")))?;
        match a.authorize() {
            Ok(_) => Ok(()),
            Err(biscuit_auth::error::Token::FailedLogic(l)) => {
                Err(TokenError::Denied(failed_checks(&l)))
            }
            Err(biscuit_auth::error::Token::RunLimit(l)) => Err(TokenError::Denied(format!(
                "the token's checks ran past the node's limits ({l})"
            ))),
            Err(e) => Err(TokenError::Denied(format!("{e}"))),
        }
    }

    /// The token's blocks as Datalog, for people.
    pub fn describe(&self) -> Vec<String> {
        (0..self.0.block_count())
            .map(|i| self.0.print_block_source(i).unwrap_or_default())
            .collect()
    }
}

fn failed_checks(l: &biscuit_auth::error::Logic) -> String {
    use biscuit_auth::error::{FailedCheck, Logic};
    let Logic::Unauthorized { checks, .. } = l else {
        return format!("{l}");
    };
    let mut out: Vec<String> = checks
        .iter()
        .map(|c| match c {
            FailedCheck::Block(b) => format!("`{}` (block {})", b.rule, b.block_id),
            FailedCheck::Authorizer(a) => format!("`{}` (the node's)", a.rule),
        })
        .collect();
    if out.is_empty() {
        out.push(format!("{l}"));
    }
    format!("the token's check failed: {}", out.join("; "))
}

/// What an attenuation adds.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub scope: Option<Scope>,
    /// Until when the token holds.
    pub expires: Option<SystemTime>,
    /// Only jobs whose name starts with this may be submitted or cancelled.
    pub job_name_prefix: Option<String>,
}

/// `token` with `limits` appended as a new block: offline, without any key (the block is
/// signed by the token's own chain).
pub fn attenuate(token: &str, limits: &Limits) -> Result<String, TokenError> {
    let b = UnverifiedBiscuit::from_base64(token.trim())
        .map_err(|e| TokenError::Invalid(format!("not a token ({e})")))?;
    let mut code = Vec::new();
    let mut params = HashMap::new();
    match limits.scope {
        Some(Scope::Read) => code.push("check if operation(\"read\");"),
        Some(Scope::Submit) => code.push(
            "check if operation($op), $op == \"read\" || $op == \"submit\" || $op == \"cancel\";",
        ),
        Some(Scope::Admin) | None => {}
    }
    if let Some(t) = limits.expires {
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        params.insert("expires".to_string(), Term::Date(secs));
        code.push("check if time($t), $t <= {expires};");
    }
    if let Some(p) = &limits.job_name_prefix {
        params.insert("prefix".to_string(), Term::Str(p.clone()));
        code.push("check if operation(\"read\") or job_name($n), $n.starts_with({prefix});");
    }
    if code.is_empty() {
        return Ok(token.trim().to_string());
    }
    let block = BlockBuilder::new()
        .code_with_params(code.join("\n"), params, HashMap::new())
        .map_err(|e| TokenError::Invalid(format!("attenuate: {e}")))?;
    b.append(block)
        .and_then(|b| b.to_base64())
        .map_err(|e| TokenError::Invalid(format!("attenuate: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Root {
        Root::from_ed25519(&[7u8; 32]).expect("root")
    }

    fn now() -> SystemTime {
        SystemTime::now()
    }

    #[test]
    fn an_admin_token_may_do_anything() {
        let r = root();
        let t = r.mint_admin("node-a").expect("mint");
        let v = r.verifier().verify(&t).expect("verify");
        for op in [
            Operation::Read,
            Operation::Submit,
            Operation::Cancel,
            Operation::Admin,
        ] {
            v.authorize(op, Some("any"), now()).expect("allowed");
        }
    }

    #[test]
    fn scopes_narrow_and_cannot_widen() {
        let r = root();
        let admin = r.mint_admin("n").expect("mint");
        let read = attenuate(
            &admin,
            &Limits {
                scope: Some(Scope::Read),
                ..Limits::default()
            },
        )
        .expect("read");
        let t = r.verifier().verify(&read).expect("verify");
        t.authorize(Operation::Read, None, now()).expect("read ok");
        let e = t
            .authorize(Operation::Submit, Some("x"), now())
            .expect_err("submit refused");
        assert!(
            matches!(&e, TokenError::Denied(m) if m.contains("operation(\"read\")")),
            "{e}"
        );
        // Asking for admin on a read token adds nothing: still read only.
        let wider = attenuate(
            &read,
            &Limits {
                scope: Some(Scope::Admin),
                ..Limits::default()
            },
        )
        .expect("attenuate");
        let t = r.verifier().verify(&wider).expect("verify");
        assert!(t.authorize(Operation::Admin, None, now()).is_err());

        let submit = attenuate(
            &admin,
            &Limits {
                scope: Some(Scope::Submit),
                ..Limits::default()
            },
        )
        .expect("submit");
        let t = r.verifier().verify(&submit).expect("verify");
        t.authorize(Operation::Submit, Some("x"), now())
            .expect("submit ok");
        t.authorize(Operation::Cancel, Some("x"), now())
            .expect("cancel ok");
        assert!(t.authorize(Operation::Admin, None, now()).is_err());
    }

    #[test]
    fn expiry_and_job_name_prefix_hold() {
        let r = root();
        let admin = r.mint_admin("n").expect("mint");
        let t = attenuate(
            &admin,
            &Limits {
                scope: Some(Scope::Submit),
                expires: Some(now() + Duration::from_secs(3600)),
                job_name_prefix: Some("ci-".into()),
            },
        )
        .expect("attenuate");
        let v = r.verifier().verify(&t).expect("verify");
        v.authorize(Operation::Submit, Some("ci-build"), now())
            .expect("prefix ok");
        v.authorize(Operation::Read, None, now()).expect("read ok");
        let e = v
            .authorize(Operation::Submit, Some("other"), now())
            .expect_err("prefix");
        assert!(format!("{e}").contains("starts_with"), "{e}");
        assert!(
            v.authorize(Operation::Submit, None, now()).is_err(),
            "a submit must name its job"
        );
        let later = now() + Duration::from_secs(7200);
        let e = v
            .authorize(Operation::Read, None, later)
            .expect_err("expired");
        assert!(format!("{e}").contains("time("), "{e}");
    }

    #[test]
    fn forged_and_foreign_tokens_are_invalid() {
        let r = root();
        let other = Root::from_ed25519(&[8u8; 32]).expect("root");
        let t = other.mint_admin("n").expect("mint");
        assert!(matches!(
            r.verifier().verify(&t),
            Err(TokenError::Invalid(_))
        ));
        assert!(r.verifier().verify("not a token").is_err());
        assert!(r.verifier().verify(&"A".repeat(MAX_TOKEN_LEN + 1)).is_err());
        // A flipped character anywhere breaks a signature or the encoding.
        let good = r.mint_admin("n").expect("mint");
        let mut bytes = good.clone().into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bytes).expect("utf8");
        assert!(r.verifier().verify(&bad).is_err());
    }

    #[test]
    fn a_prefix_is_data_not_code() {
        // A prefix that looks like Datalog stays a string.
        let r = root();
        let admin = r.mint_admin("n").expect("mint");
        let t = attenuate(
            &admin,
            &Limits {
                job_name_prefix: Some("\"); allow if true; //".into()),
                ..Limits::default()
            },
        )
        .expect("attenuate");
        let v = r.verifier().verify(&t).expect("verify");
        assert!(v.authorize(Operation::Submit, Some("x"), now()).is_err());
    }

    #[test]
    fn a_token_with_too_many_blocks_is_refused() {
        let r = root();
        let mut t = r.mint_admin("n").expect("mint");
        for _ in 0..MAX_BLOCKS {
            t = attenuate(
                &t,
                &Limits {
                    scope: Some(Scope::Submit),
                    ..Limits::default()
                },
            )
            .expect("attenuate");
        }
        assert!(matches!(
            r.verifier().verify(&t),
            Err(TokenError::Invalid(m)) if m.contains("blocks")
        ));
    }
}
