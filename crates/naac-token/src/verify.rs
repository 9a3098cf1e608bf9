//! Minting, and checking tokens: signatures to a trusted root, the holder chain, the
//! request's facts against every block's checks.

use crate::{Key, Kind, Limits, Operation, TokenError, hint, holder_context, holder_in};
use biscuit_auth::builder::{Fact, Policy, Term, fact};
use biscuit_auth::{Biscuit, KeyPair, PrivateKey, PublicKey};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// A key that mints tokens (and signs the blocks its holder hands tokens on with).
pub struct Root {
    pub(crate) key: KeyPair,
}

impl Root {
    /// The root of the ed25519 secret key `secret` (a node's identity key, a user's key).
    pub fn from_ed25519(secret: &[u8; 32]) -> Result<Root, TokenError> {
        let private = PrivateKey::from_bytes(secret, biscuit_auth::Algorithm::Ed25519)
            .map_err(|e| TokenError::Invalid(format!("the root key: {e}")))?;
        Ok(Root {
            key: KeyPair::from(&private),
        })
    }

    /// The public key tokens of this root are checked against.
    pub fn public(&self) -> Key {
        key_bytes(&self.key.public())
    }

    /// A token that may do anything on this node's API, naming `node` (the node's id).
    pub fn mint_admin(&self, node: &str) -> Result<String, TokenError> {
        let mut params = HashMap::new();
        params.insert("node".to_string(), Term::Str(node.to_string()));
        params.insert("root".to_string(), Term::Bytes(self.public().to_vec()));
        Biscuit::builder()
            .code_with_params(
                "kind(\"api\"); root({root}); node({node});",
                params,
                HashMap::new(),
            )
            .and_then(|b| b.build(&self.key))
            .and_then(|b| b.to_base64())
            .map_err(|e| TokenError::Invalid(format!("mint a token: {e}")))
    }

    /// A token of `kind`, bound to `holder` if given, limited to `limits` from the start.
    pub fn mint(
        &self,
        kind: Kind,
        holder: Option<&Key>,
        limits: &Limits,
    ) -> Result<String, TokenError> {
        let (checks, mut params) = limits.code()?;
        params.insert("kind".to_string(), Term::Str(kind.as_str().into()));
        params.insert("root".to_string(), Term::Bytes(self.public().to_vec()));
        let mut b = Biscuit::builder()
            .code_with_params(
                format!("kind({{kind}});\nroot({{root}});\n{checks}"),
                params,
                HashMap::new(),
            )
            .map_err(|e| TokenError::Invalid(format!("mint a token: {e}")))?
            .root_key_id(hint(&self.public()));
        if let Some(h) = holder {
            b = b.context(holder_context(h));
        }
        b.build(&self.key)
            .and_then(|b| b.to_base64())
            .map_err(|e| TokenError::Invalid(format!("mint a token: {e}")))
    }

    /// A verifier that trusts this root only.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            roots: vec![(self.public(), self.key.public())],
        }
    }
}

fn key_bytes(k: &PublicKey) -> Key {
    let mut out = [0u8; 32];
    let b = k.to_bytes();
    if b.len() == 32 {
        out.copy_from_slice(&b);
    }
    out
}

/// Checks tokens against the roots it trusts.
#[derive(Clone)]
pub struct Verifier {
    roots: Vec<(Key, PublicKey)>,
}

impl Verifier {
    /// A verifier that trusts tokens rooted in any of `keys` (ed25519 public keys).
    pub fn trusting(keys: &[Key]) -> Result<Verifier, TokenError> {
        let roots = keys
            .iter()
            .map(|k| {
                PublicKey::from_bytes(k, biscuit_auth::Algorithm::Ed25519)
                    .map(|p| (*k, p))
                    .map_err(|e| TokenError::Invalid(format!("a trusted root: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Verifier { roots })
    }

    /// The roots trusted.
    pub fn roots(&self) -> impl Iterator<Item = &Key> {
        self.roots.iter().map(|(k, _)| k)
    }

    /// Parses `token`, checks every block's signature chains to a trusted root and that
    /// each holder was named by the holder before it.
    pub fn verify(&self, token: &str) -> Result<Token, TokenError> {
        let token = token.trim();
        if token.len() > crate::MAX_TOKEN_LEN {
            return Err(TokenError::Invalid(format!(
                "the token is {} bytes; at most {} are accepted",
                token.len(),
                crate::MAX_TOKEN_LEN
            )));
        }
        let chosen = Cell::new(None);
        let provider = |id: Option<u32>| {
            let found = match id {
                Some(h) => self.roots.iter().find(|(k, _)| hint(k) == h),
                None if self.roots.len() == 1 => self.roots.first(),
                None => None,
            };
            let (k, p) = found.ok_or(biscuit_auth::error::Format::UnknownPublicKey)?;
            chosen.set(Some(*k));
            Ok(*p)
        };
        let b = Biscuit::from_base64(token, provider).map_err(|e| {
            TokenError::Invalid(match e {
                biscuit_auth::error::Token::Format(
                    biscuit_auth::error::Format::UnknownPublicKey,
                ) => "the token is not rooted in a key this node trusts".to_string(),
                e => format!("not a valid token of a key this node trusts ({e})"),
            })
        })?;
        let root = chosen
            .get()
            .ok_or_else(|| TokenError::Invalid("the token names no root".into()))?;
        if b.block_count() > crate::MAX_BLOCKS {
            return Err(TokenError::Invalid(format!(
                "the token has {} blocks; at most {} are accepted",
                b.block_count(),
                crate::MAX_BLOCKS
            )));
        }
        shape(&b)?;
        let holder = holders(&b)?;
        let authority = b.print_block_source(0).unwrap_or_default();
        let kind = authority
            .lines()
            .find_map(|l| l.trim().strip_prefix("kind(\"")?.strip_suffix("\");"))
            .map_or(Some(Kind::Api), Kind::parse)
            .ok_or_else(|| {
                TokenError::Invalid("the token is of a kind naac does not know".into())
            })?;
        Ok(Token {
            b,
            root,
            holder,
            kind,
        })
    }
}

/// `token` checked against the root its authority block names (`root($key)`): its
/// signatures and holder chain hold, whoever that root is. For reading a token
/// (`naac token inspect`); a verifier that grants anything trusts its own roots instead.
pub fn inspect(token: &str) -> Result<Token, TokenError> {
    if token.len() > crate::MAX_TOKEN_LEN {
        return Err(TokenError::Invalid(format!(
            "the token is {} bytes; at most {} are accepted",
            token.len(),
            crate::MAX_TOKEN_LEN
        )));
    }
    let b = biscuit_auth::UnverifiedBiscuit::from_base64(token.trim())
        .map_err(|e| TokenError::Invalid(format!("not a token ({e})")))?;
    let authority = b.print_block_source(0).unwrap_or_default();
    let root = authority
        .lines()
        .find_map(|l| l.trim().strip_prefix("root(hex:")?.strip_suffix(");"))
        .and_then(crate::key_of_hex)
        .ok_or_else(|| {
            TokenError::Invalid("the token does not name its root key (an API token minted before tokens named theirs)".into())
        })?;
    Verifier::trusting(&[root])?.verify(token)
}

/// The revocation ids of `token`'s blocks, without checking a signature: to look a token up
/// in a set of revoked ids cheaply (a revoked id is only ever one a checked revocation named).
pub fn revocation_ids(token: &str) -> Result<Vec<Vec<u8>>, TokenError> {
    if token.len() > crate::MAX_TOKEN_LEN {
        return Err(TokenError::Invalid("the token is too long".into()));
    }
    biscuit_auth::UnverifiedBiscuit::from_base64(token.trim())
        .map(|b| b.revocation_identifiers())
        .map_err(|e| TokenError::Invalid(format!("not a token ({e})")))
}

/// Most checks in one block, queries in one check, expressions in one query and operations in
/// one expression; most facts in the authority block.
const MAX_CHECKS: usize = 16;
const MAX_QUERIES: usize = 2;
const MAX_EXPRESSIONS: usize = 2;
const MAX_OPS: usize = 32;
const MAX_AUTHORITY_FACTS: usize = 8;

/// Refuses a token whose Datalog could cost more than naac's vocabulary does, read from its
/// blocks' structure before anything runs (biscuit checks its time limit only between rule
/// iterations, so one join of many facts could run unbounded): no rules, no `trusting`
/// scopes, facts only in the authority block, and every check's queries on one predicate
/// each (no joins), a few small expressions.
fn shape(b: &Biscuit) -> Result<(), TokenError> {
    use biscuit_auth::format::schema;
    use prost::Message as _;
    let bad = |i: usize, what: &str| {
        TokenError::Invalid(format!(
            "block {i} of the token holds {what}, which naac's tokens never use"
        ))
    };
    let bytes = b
        .to_vec()
        .map_err(|e| TokenError::Invalid(format!("the token: {e}")))?;
    let t = schema::Biscuit::decode(bytes.as_slice())
        .map_err(|e| TokenError::Invalid(format!("the token does not decode: {e}")))?;
    for (i, signed) in std::iter::once(&t.authority).chain(&t.blocks).enumerate() {
        let block = schema::Block::decode(signed.block.as_slice())
            .map_err(|e| TokenError::Invalid(format!("block {i} does not decode: {e}")))?;
        if !block.rules.is_empty() {
            return Err(bad(i, "rules"));
        }
        if !block.scope.is_empty() {
            return Err(bad(i, "a trusting scope"));
        }
        let facts_allowed = if i == 0 { MAX_AUTHORITY_FACTS } else { 0 };
        if block.facts.len() > facts_allowed {
            return Err(bad(i, "facts"));
        }
        if block.checks.len() > MAX_CHECKS {
            return Err(bad(i, "more than 16 checks"));
        }
        for c in &block.checks {
            if c.queries.len() > MAX_QUERIES {
                return Err(bad(i, "a check of many queries"));
            }
            for q in &c.queries {
                if q.body.len() > 1 {
                    return Err(bad(i, "a check that joins facts"));
                }
                if !q.scope.is_empty() {
                    return Err(bad(i, "a trusting scope"));
                }
                if q.expressions.len() > MAX_EXPRESSIONS
                    || q.expressions.iter().any(|e| e.ops.len() > MAX_OPS)
                {
                    return Err(bad(i, "a long expression"));
                }
            }
        }
    }
    Ok(())
}

/// The holder at the end of `b`'s chain: the authority block's, then each block signed by
/// the holder of its time (anyone, while there is none) that names the next.
fn holders(b: &Biscuit) -> Result<Option<Key>, TokenError> {
    let contexts = b.context();
    let signers = b.external_public_keys();
    let mut holder = holder_in(contexts.first().and_then(|c| c.as_deref()))?;
    for i in 1..b.block_count() {
        let Some(next) = holder_in(contexts.get(i).and_then(|c| c.as_deref()))? else {
            continue;
        };
        let signer = signers.get(i).copied().flatten().map(|k| key_bytes(&k));
        match (signer, holder) {
            (Some(s), Some(h)) if s == h => holder = Some(next),
            (Some(_), None) => holder = Some(next),
            _ => {
                return Err(TokenError::Invalid(format!(
                    "block {i} hands the token on but is not signed by its holder"
                )));
            }
        }
    }
    Ok(holder)
}

/// A token whose signatures and holder chain hold.
pub struct Token {
    b: Biscuit,
    root: Key,
    holder: Option<Key>,
    kind: Kind,
}

/// What a provider states when a requester runs work with a pool token.
#[derive(Clone, Copy, Debug)]
pub struct PoolRequest<'a> {
    /// The provider's peer id.
    pub host: &'a str,
    /// The key of the user the requester proved it works for, if any.
    pub user: Option<&'a Key>,
    pub job_name: &'a str,
    /// Tasks of this grant that would run at once here, this one included.
    pub slots: u32,
    /// The provider's local time, minutes since midnight.
    pub minute_of_day: u16,
    pub now: SystemTime,
}

/// What a bank states when a request opens (or tops up) an escrow with a spend token.
#[derive(Clone, Copy, Debug)]
pub struct SpendRequest<'a> {
    /// The key that signed the request.
    pub user: &'a Key,
    /// The job's id, hex.
    pub job: &'a str,
    /// µcredits the job's escrow will have taken in, this request included.
    pub amount: u64,
    /// µcredits every escrow of the grant will have taken in, this request included.
    pub spent: u64,
    pub now: SystemTime,
}

/// What a stored-data request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataOp {
    /// Read the tree's listing (the manifest) or a file's bytes.
    Read,
    /// Store new data under the root's name (through the root's own node).
    Write,
}

impl DataOp {
    pub fn as_str(self) -> &'static str {
        match self {
            DataOp::Read => "read",
            DataOp::Write => "write",
        }
    }
}

/// What a storage host (or the owner's node) states when a peer uses stored data with a
/// data token.
#[derive(Clone, Copy, Debug)]
pub struct DataRequest<'a> {
    /// The key that presents the token: the peer's own key on the network (the connection
    /// proves it), or the user key a request was signed with.
    pub by: Option<&'a Key>,
    pub op: DataOp,
    /// The stored data's id (`naac://` id, 64 lowercase hex).
    pub manifest: &'a str,
    /// The file the request reads or writes, inside the tree; `None`: the listing.
    pub path: Option<&'a str>,
    pub now: SystemTime,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Token {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The key the token is rooted in.
    pub fn root(&self) -> &Key {
        &self.root
    }

    /// Who holds it (`None`: a bearer token).
    pub fn holder(&self) -> Option<&Key> {
        self.holder.as_ref()
    }

    /// The revocation id of each block, authority first: revoking any of them revokes every
    /// token that contains that block.
    pub fn revocation_ids(&self) -> Vec<Vec<u8>> {
        self.b.revocation_identifiers()
    }

    /// The holder when block `block` was added (`None` for the authority block, or while
    /// the token was a bearer token).
    pub fn holder_at(&self, block: usize) -> Option<Key> {
        let contexts = self.b.context();
        let mut holder = None;
        for c in contexts.iter().take(block) {
            if let Ok(Some(next)) = crate::holder_in(c.as_deref()) {
                holder = Some(next);
            }
        }
        holder
    }

    /// Whether `by` may revoke block `block` (and so every token made with it): the root
    /// may revoke any block; a holder, any block added while it or a later holder held the
    /// token.
    pub fn may_revoke(&self, block: usize, by: &Key) -> Result<(), TokenError> {
        if block >= self.b.block_count() {
            return Err(TokenError::Invalid(format!(
                "the token has no block {block} (it has {})",
                self.b.block_count()
            )));
        }
        if *by == self.root || (1..=block).any(|i| self.holder_at(i).as_ref() == Some(by)) {
            return Ok(());
        }
        Err(TokenError::Denied(format!(
            "only the token's root or a holder before block {block} may revoke it"
        )))
    }

    /// The earliest expiry among blocks `0..=block`: after it, every token made with that
    /// block is refused anyway (`None`: none of them expires).
    pub fn expires_through(&self, block: usize) -> Option<SystemTime> {
        (0..=block.min(self.b.block_count().saturating_sub(1)))
            .filter_map(|i| self.b.print_block_source(i).ok())
            .flat_map(|src| {
                src.lines()
                    .filter_map(|l| {
                        let t = l.trim().strip_prefix("check if time($t), $t <= ")?;
                        crate::words::parse_utc(t.strip_suffix(';')?)
                    })
                    .collect::<Vec<_>>()
            })
            .min()
    }

    /// Each block as Datalog, authority first.
    pub fn blocks(&self) -> Vec<String> {
        (0..self.b.block_count())
            .map(|i| self.b.print_block_source(i).unwrap_or_default())
            .collect()
    }

    /// Whether any block's Datalog names the fact `name` (conservatively: any mention), so a
    /// verifier may run once for requests that differ only in that fact when none does.
    pub fn mentions(&self, name: &str) -> bool {
        let needle = format!("{name}(");
        // A block that cannot be printed may mention anything.
        (0..self.b.block_count()).any(|i| {
            self.b
                .print_block_source(i)
                .map_or(true, |src| src.contains(&needle))
        })
    }

    /// Each block's context, authority first.
    pub fn contexts(&self) -> Vec<Option<String>> {
        self.b.context()
    }

    /// Each block's signer when it is not the token's own chain (a holder handing it on).
    pub fn signers(&self) -> Vec<Option<Key>> {
        self.b
            .external_public_keys()
            .iter()
            .map(|k| k.as_ref().map(key_bytes))
            .collect()
    }

    /// The token as it travels.
    pub fn to_base64(&self) -> Result<String, TokenError> {
        self.b
            .to_base64()
            .map_err(|e| TokenError::Invalid(format!("{e}")))
    }

    /// Runs the token's checks for API operation `op` (on the job named `job_name`, if
    /// any) at `now`.
    pub fn authorize(
        &self,
        op: Operation,
        job_name: Option<&str>,
        now: SystemTime,
    ) -> Result<(), TokenError> {
        if self.kind != Kind::Api {
            return Err(TokenError::Denied(format!(
                "this is a {} token, not one for a node's API",
                self.kind.as_str()
            )));
        }
        let mut facts = vec![
            fact("operation", &[Term::Str(op.as_str().into())]),
            fact("time", &[Term::Date(secs(now))]),
        ];
        if let Some(n) = job_name {
            facts.push(fact("job_name", &[Term::Str(n.into())]));
        }
        self.run(facts, &API_POLICIES)
    }

    /// Runs the token's checks for running a task of `req.job_name` on provider `req.host`.
    pub fn authorize_pool(&self, req: &PoolRequest<'_>) -> Result<(), TokenError> {
        if self.kind != Kind::Pool {
            return Err(TokenError::Denied(format!(
                "this is a {} token, not one for running work",
                self.kind.as_str()
            )));
        }
        if let Some(h) = &self.holder
            && req.user != Some(h)
        {
            return Err(TokenError::Denied(match req.user {
                Some(_) => {
                    "the token is held by another user than the one your run works for".to_string()
                }
                None => "the token is held by a user; your run names none (it needs its user key)"
                    .to_string(),
            }));
        }
        let facts = vec![
            fact("operation", &[Term::Str("run".into())]),
            fact("time", &[Term::Date(secs(req.now))]),
            fact("host", &[Term::Str(req.host.into())]),
            fact("job_name", &[Term::Str(req.job_name.into())]),
            fact("slots", &[Term::Integer(i64::from(req.slots))]),
            fact(
                "minute_of_day",
                &[Term::Integer(i64::from(req.minute_of_day))],
            ),
        ];
        self.run(facts, &POOL_POLICIES)
    }

    /// Runs the token's checks for escrowing credits from its root's account.
    pub fn authorize_spend(&self, req: &SpendRequest<'_>) -> Result<(), TokenError> {
        if self.kind != Kind::Spend {
            return Err(TokenError::Denied(format!(
                "this is a {} token, not one for spending",
                self.kind.as_str()
            )));
        }
        if let Some(h) = &self.holder
            && req.user != h
        {
            return Err(TokenError::Denied(
                "the token is held by another key than the one that signed the request".into(),
            ));
        }
        if self.holder.is_none() {
            // Its requests are stored in the public ledger: a bearer token would be anyone's.
            return Err(TokenError::Denied(
                "a spend token must name its holder (mint it with --to)".into(),
            ));
        }
        let int = |v: u64| Term::Integer(i64::try_from(v).unwrap_or(i64::MAX));
        let facts = vec![
            fact("operation", &[Term::Str("escrow".into())]),
            fact("time", &[Term::Date(secs(req.now))]),
            fact("job", &[Term::Str(req.job.into())]),
            fact("amount", &[int(req.amount)]),
            fact("spent", &[int(req.spent)]),
        ];
        self.run_within(facts, &SPEND_POLICIES, SPEND_LIMITS)
    }

    /// Runs the token's checks for reading (or writing) stored data. A bound token must be
    /// presented by its holder; on the network a data token must be bound (a client binds it
    /// to its own session key before showing it, so the host it shows it to cannot reuse it).
    pub fn authorize_data(&self, req: &DataRequest<'_>) -> Result<(), TokenError> {
        if self.kind != Kind::Data {
            return Err(TokenError::Denied(format!(
                "this is a {} token, not one for stored data",
                self.kind.as_str()
            )));
        }
        if let Some(h) = &self.holder
            && req.by != Some(h)
        {
            return Err(TokenError::Denied(
                "the token is held by another key than the one that shows it".into(),
            ));
        }
        let mut facts = vec![
            fact("operation", &[Term::Str(req.op.as_str().into())]),
            fact("time", &[Term::Date(secs(req.now))]),
            fact("manifest", &[Term::Str(req.manifest.to_ascii_lowercase())]),
        ];
        match req.path {
            Some(p) => facts.push(fact("path", &[Term::Str(p.into())])),
            None => facts.push(fact("listing", &[Term::Bool(true)])),
        }
        self.run(facts, &DATA_POLICIES)
    }

    /// The most tasks (at most `max`) the token lets its grant run at once for `req`
    /// (whose `slots` is ignored), or why it lets none.
    pub fn pool_slots(&self, req: &PoolRequest<'_>, max: u32) -> Result<u32, TokenError> {
        let at = |n: u32| self.authorize_pool(&PoolRequest { slots: n, ..*req });
        let max = max.max(1);
        at(1)?;
        if at(max).is_ok() {
            return Ok(max);
        }
        // Slot checks only bound from above: the largest n that passes.
        let (mut ok, mut bad) = (1u32, max);
        while bad - ok > 1 {
            let mid = ok + (bad - ok) / 2;
            if at(mid).is_ok() {
                ok = mid;
            } else {
                bad = mid;
            }
        }
        Ok(ok)
    }

    /// Runs every block's checks with `facts` stated, then `policies` in order.
    fn run(&self, facts: Vec<Fact>, policies: &[Policy]) -> Result<(), TokenError> {
        self.run_within(facts, policies, crate::LIMITS)
    }

    fn run_within(
        &self,
        facts: Vec<Fact>,
        policies: &[Policy],
        limits: biscuit_auth::AuthorizerLimits,
    ) -> Result<(), TokenError> {
        let mut builder = biscuit_auth::AuthorizerBuilder::new().set_limits(limits);
        for f in facts {
            builder = builder
                .fact(f)
                .map_err(|e| TokenError::Invalid(format!("the token's checks cannot run: {e}")))?;
        }
        for p in policies {
            builder = builder
                .policy(p.clone())
                .map_err(|e| TokenError::Invalid(format!("the token's checks cannot run: {e}")))?;
        }
        let mut a = builder
            .build(&self.b)
            .map_err(|e| TokenError::Invalid(format!("the token's checks cannot run: {e}")))?;
        match a.authorize() {
            Ok(_) => Ok(()),
            Err(biscuit_auth::error::Token::FailedLogic(l)) => {
                Err(TokenError::Denied(failed_checks(&l)))
            }
            Err(biscuit_auth::error::Token::RunLimit(l)) => Err(TokenError::Denied(format!(
                "the token's checks ran past the verifier's limits ({l})"
            ))),
            Err(e) => Err(TokenError::Denied(format!("{e}"))),
        }
    }
}

/// The API's policies: an API token only (or one of no kind, minted before kinds).
static API_POLICIES: LazyLock<Vec<Policy>> = LazyLock::new(|| {
    ["deny if kind($k), $k != \"api\"", "allow if true"]
        .iter()
        .map(|p| Policy::try_from(*p).expect("a fixed policy parses"))
        .collect()
});

/// A provider's policy: a pool token only.
static POOL_POLICIES: LazyLock<Vec<Policy>> = LazyLock::new(|| {
    vec![Policy::try_from("allow if kind(\"pool\")").expect("a fixed policy parses")]
});

/// A bank's limits: the ledger replays these checks, so a loaded machine must never time out
/// where the live bank did not; the token's shape (no rules, no joins) keeps them cheap.
const SPEND_LIMITS: biscuit_auth::AuthorizerLimits = biscuit_auth::AuthorizerLimits {
    max_facts: 1_000,
    max_iterations: 100,
    max_time: std::time::Duration::from_secs(10),
};

/// A storage host's (or the owner node's) policy: a data token only.
static DATA_POLICIES: LazyLock<Vec<Policy>> = LazyLock::new(|| {
    vec![Policy::try_from("allow if kind(\"data\")").expect("a fixed policy parses")]
});

/// A bank's policy: a spend token only.
static SPEND_POLICIES: LazyLock<Vec<Policy>> = LazyLock::new(|| {
    vec![Policy::try_from("allow if kind(\"spend\")").expect("a fixed policy parses")]
});

fn failed_checks(l: &biscuit_auth::error::Logic) -> String {
    use biscuit_auth::error::{FailedCheck, Logic};
    let Logic::Unauthorized { checks, .. } = l else {
        return format!("{l}");
    };
    let mut out: Vec<String> = checks
        .iter()
        .map(|c| match c {
            FailedCheck::Block(b) => format!("`{}` (block {})", b.rule, b.block_id),
            FailedCheck::Authorizer(a) => format!("`{}` (the verifier's)", a.rule),
        })
        .collect();
    if out.is_empty() {
        out.push(format!("{l}"));
    }
    format!("the token's check failed: {}", out.join("; "))
}
