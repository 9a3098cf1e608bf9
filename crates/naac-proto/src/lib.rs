//! Versioned wire messages of the naac task protocol (`/naac/task/1`) — the only network serde
//! in naac.
//!
//! Both sides speak the same request/response pair; who sends what:
//!
//! | request | from → to | response |
//! | --- | --- | --- |
//! | [`RequestBody::Hello`] | requester → provider | [`ResponseBody::Welcome`] (slots, host status) or `Refused` |
//! | [`RequestBody::Status`] | provider → requester | `Ack` |
//! | [`RequestBody::Assign`] | requester → provider | `Ack`, [`ResponseBody::Report`] (see [`Assign::reply_with_results`]) or `Refused` |
//! | [`RequestBody::Cancel`] | requester → provider | `Ack` |
//! | [`RequestBody::Fetch`] | provider → requester | `Blob` or `NotFound` |
//! | [`RequestBody::Report`] | provider → requester | `Ack` |
//! | [`RequestBody::Checkpoint`] | provider → requester | `Ack` or `Refused` |
//! | [`RequestBody::Bank`] | anyone → a bank | [`ResponseBody::Bank`] or `Refused` |
//! | [`RequestBody::Store`] | anyone → a storage host | [`ResponseBody::Store`], `NotFound` or `Refused` (see [`store`]) |
//!
//! A `Report` carries finished results and renews the lease of every task still held. Each
//! result is signed by the provider (see [`naac_types::record`]); the requester rebuilds the
//! record from what it assigned and what came back, and rejects it unless the signature
//! matches. A provider's [`HostStatus`] (its resources from the device manager, whether its
//! owner's policy lets it take work now, its limits, and whether the asking requester may use
//! it at all) comes with the `Welcome` and is pushed again as a `Status` whenever it changes
//! and at least every 30 s. A `Hello` may carry a [`UserAttestation`]: the requester's
//! per-run identity signed by its user's long-lived key, so providers' allow and deny lists
//! can name people. A `Checkpoint` carries a running task's saved state; a later attempt of the task
//! names it in [`TaskSpec::resume`] and fetches it like any other blob.
//! A requester's `Hello` may carry a [`Solicit`] (the job, its `max_price` and limits): the
//! provider answers with a sealed, signed ask in its `Welcome` ([`Bid`]), which the requester
//! uses in its reverse Vickrey auctions and the bank checks when the requester pays.
//! Modules and inputs travel by content id: a provider fetches each blob once and checks its
//! hash. Every message carries [`VERSION`]; byte payloads use `serde_bytes` (compact CBOR
//! byte strings). Sizes are bounded at the codec by kind ([`request_limit`],
//! [`response_limit`]: 64 KiB for the kinds that carry no bulk data) and in all by
//! [`MAX_MESSAGE_BYTES`].
//!
//! The ledger values a bank exchanges ([`ledger`]) and the asks providers bid with
//! ([`market`]) are this crate's own wire types, with the same serde shape (so the same
//! bytes) as the `naac-ledger` and `naac-market` values they carry; `naac-bank` converts
//! between the two, so this crate depends on neither.

pub mod ledger;
pub mod market;
pub mod store;

pub use ledger::{Account, AccountKey, Entry, Hash, InclusionProof, Kind, SignedRequest, TreeHead};
pub use market::{Ask, SignedAsk};
use naac_types::{ContentId, Credits, JobId, Limits, Outcome, Price};
use serde::{Deserialize, Serialize};

/// Protocol name for task dispatch and results.
pub const TASK_PROTOCOL: &str = "/naac/task/1";
/// Message schema version inside the protocol.
pub const VERSION: u16 = 8;
/// Largest message either side accepts; larger frames are dropped by the codec.
pub const MAX_MESSAGE_BYTES: u64 = 512 << 20;
/// Largest frame of a message that carries no bulk data: `Hello`, `Status`, `Fetch`,
/// `Welcome`, `Ack`, `NotFound`, `Refused`, and any kind [`request_limit`] or
/// [`response_limit`] does not name.
pub const MAX_SMALL_MESSAGE_BYTES: u64 = 64 << 10;

/// The most bytes a request may take on the wire, by its [`RequestBody`] variant's name (the
/// codec learns the name from the first bytes of a frame, before it reads the rest). Only the
/// kinds that carry bulk data may be large.
pub fn request_limit(kind: &str) -> u64 {
    match kind {
        // Results: one large result still travels alone (see `REPORT_SOFT_LIMIT`).
        "Report" => MAX_MESSAGE_BYTES,
        // Up to `MAX_TASKS_PER_ASSIGN` tasks with their arguments and input ids.
        "Assign" => 64 << 20,
        // A guest's saved state (the sandbox allows 64 MiB) and its names.
        "Checkpoint" => (64 << 20) + MAX_SMALL_MESSAGE_BYTES,
        // Up to `MAX_BANK_BATCH` signed requests of at most 4 KiB each, with their framing.
        "Bank" => 8 << 20,
        // Every attempt a provider holds of one job.
        "Cancel" => 1 << 20,
        // A shard's bytes (1 MiB a `Put`) or a signed manifest (8 MiB).
        "Store" => store::MAX_STORE_FRAME,
        _ => MAX_SMALL_MESSAGE_BYTES,
    }
}

/// The most bytes a response may take on the wire, by its [`ResponseBody`] variant's name.
pub fn response_limit(kind: &str) -> u64 {
    match kind {
        // Modules, inputs, stdin and checkpoints.
        "Blob" => MAX_MESSAGE_BYTES,
        // Up to `MAX_BANK_ENTRIES` entries, each with its signed request.
        "Bank" => MAX_MESSAGE_BYTES,
        // A verified slice or a signed manifest.
        "Store" => store::MAX_STORE_FRAME,
        // Results answering an `Assign`, as large as a `Report` request may be.
        "Report" => MAX_MESSAGE_BYTES,
        _ => MAX_SMALL_MESSAGE_BYTES,
    }
}

/// How long a provider keeps an [`Assign`] that asked for [`Assign::reply_with_results`]
/// unanswered, waiting for its first report, before it answers `Ack` and reports as usual.
pub const REPLY_HOLD_MS: u64 = 50;

/// A provider sends results in reports of about this size at most (one larger result still
/// goes alone).
pub const REPORT_SOFT_LIMIT: usize = 16 << 20;
/// Most tasks in one `Assign`.
pub const MAX_TASKS_PER_ASSIGN: usize = 4096;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub v: u16,
    pub body: RequestBody,
}

impl Request {
    pub fn new(body: RequestBody) -> Self {
        Self { v: VERSION, body }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RequestBody {
    /// Are you a provider, and how many slots do you have?
    Hello(Hello),
    /// A provider's status changed (or 30 s passed): sent to every peer that said Hello.
    Status(Box<HostStatus>),
    Assign(Assign),
    /// Drop these attempts `(task, attempt)` of the job; an empty list means every task of
    /// the job. A newer attempt of the same task is not affected.
    Cancel {
        job: JobId,
        tasks: Vec<(u32, u32)>,
    },
    /// Send me the blob with this content id (module, input, stdin).
    Fetch {
        id: ContentId,
    },
    Report(Report),
    /// A running attempt saved its state; the requester keeps the latest per task.
    Checkpoint {
        job: JobId,
        index: u32,
        attempt: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    Bank(BankRequest),
    /// Storage: shards, manifests, reads and audits.
    Store(store::StoreRequest),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub v: u16,
    pub body: ResponseBody,
}

impl Response {
    pub fn new(body: ResponseBody) -> Self {
        Self { v: VERSION, body }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ResponseBody {
    Welcome(Box<Welcome>),
    Ack,
    Blob(#[serde(with = "serde_bytes")] Vec<u8>),
    NotFound,
    /// The request was understood and declined; the text says why.
    Refused(String),
    /// A bank's answer to [`RequestBody::Bank`].
    Bank(Box<BankResponse>),
    /// A storage host's answer to [`RequestBody::Store`].
    Store(store::StoreResponse),
    /// A provider's answer to an [`Assign`] that set [`Assign::reply_with_results`]: the
    /// job's next report, carried back on the assignment's own exchange instead of a
    /// `Report` request of its own. The requester treats it exactly as that request.
    Report(Box<Report>),
}

/// Opens a conversation with a provider.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Hello {
    pub user: Option<UserAttestation>,
    /// A requester's call for a sealed ask for its job.
    pub solicit: Option<Solicit>,
    /// A pool token the requester runs under (`naac run --token`): a provider whose owner
    /// trusts its root lets it in even when it is not on the allow list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<Pass>,
}

/// The gossip topic revocations of tokens travel on (`naac token revoke`).
pub const REVOCATION_TOPIC: &str = "/naac/revocations/1";

/// "Block `block` of `token` is revoked", signed by `by`: the token's root, or a holder of
/// the token at or before that block. Every token made with that block is refused once a
/// node has it. JSON on the wire (rare and small: the token is at most 16 KiB).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Revocation {
    pub v: u16,
    /// The token, so a node can check that `by` may revoke it.
    pub token: String,
    pub block: u32,
    /// The revoker's user id.
    pub by: String,
    /// `by`'s signature over [`Revocation::signing_bytes`] of the block's revocation id.
    pub sig: Vec<u8>,
}

impl Revocation {
    /// What a revoker signs: a domain tag and the revoked block's revocation id.
    pub fn signing_bytes(revocation_id: &[u8]) -> Vec<u8> {
        let mut b = b"naac revocation v1\0".to_vec();
        b.extend_from_slice(revocation_id);
        b
    }
}

/// A pool token shown in a [`Hello`], and the job the requester means to run with it (each
/// `Assign` is checked again under its own job name).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pass {
    /// The token, base64 (at most 16 KiB).
    pub token: String,
    pub job_name: String,
}

/// What a provider needs to price a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Solicit {
    pub job: JobId,
    /// The most the requester pays per giga-fuel.
    pub max_price: Price,
    /// Fuel limit of one task.
    pub fuel: u64,
    /// The bank the job's escrow is at (its key): a provider paid at another bank does not
    /// bid, and one paid at this bank checks the escrow there before it runs the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<AccountKey>,
}

/// A provider's answer to a [`Solicit`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Bid {
    Ask(SignedAsk),
    /// It will not bid, and why (e.g. its owner's minimum price is above `max_price`).
    NoBid(String),
}

/// "The peer sending this works for user `user`": the user's key signs the sender's peer id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserAttestation {
    /// The user's id (a peer id string of the user's key).
    pub user: String,
    /// The user key's signature over [`UserAttestation::signing_bytes`].
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl UserAttestation {
    /// What the user key signs: a domain tag and the session peer id's bytes.
    pub fn signing_bytes(session_peer: &[u8]) -> Vec<u8> {
        let mut v = b"naac user session v1\0".to_vec();
        v.extend_from_slice(session_peer);
        v
    }
}

/// A provider's answer to `Hello`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Welcome {
    /// Slots the node has (its policy may allow fewer now; see `status.slots`).
    pub slots: u32,
    pub agent: String,
    /// Who runs this provider, when its operator says so; replicas of a task go to
    /// providers with distinct owners.
    pub owner: Option<String>,
    pub status: HostStatus,
    /// The answer to the `Hello`'s [`Solicit`], if it had one.
    pub bid: Option<Bid>,
    /// Where it listens (each ending in `/p2p/<its id>`, at most [`MAX_WELCOME_ADDRS`]), so
    /// other providers can fetch what it holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
}

/// Most addresses a [`Welcome`] or a [`Holders`] names per provider.
pub const MAX_WELCOME_ADDRS: usize = 8;

/// A provider's listen addresses as its [`Welcome`] gives them.
pub fn welcome_addrs<A: std::fmt::Display>(addrs: &[A]) -> Vec<String> {
    addrs
        .iter()
        .take(MAX_WELCOME_ADDRS)
        .map(|a| a.to_string())
        .collect()
}

/// What a provider is and whether it takes work, as seen by the peer it is sent to.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HostStatus {
    /// Increases with every status the provider sends; older ones are ignored.
    pub seq: u64,
    pub resources: naac_types::host::Resources,
    pub state: naac_types::host::HostState,
    pub limits: naac_types::host::HostLimits,
    /// Slots the policy allows now (`max_slots`), and how many are busy.
    pub slots: u32,
    pub running: u32,
    /// Why this peer may not use the provider at all (deny or allow list).
    pub denied: Option<String>,
    /// The disk it lends (`naac node --store`), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<store::StoreInfo>,
}

/// Tasks of one job for one provider.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Assign {
    pub job: JobId,
    /// Increases with every `Assign` a requester sends a provider; reports echo the highest
    /// applied, so the requester knows which assignments a report's `held` list reflects.
    pub seq: u64,
    pub module: ContentId,
    /// argv[0] for every task (the job's name).
    pub argv0: String,
    pub limits: Limits,
    /// Guests may checkpoint at most this often (milliseconds); `None`: no checkpoints.
    pub checkpoint_interval_ms: Option<u64>,
    pub tasks: Vec<TaskSpec>,
    /// For paid work: the payer's signed order for these runs, in this order (the bank's
    /// `Order`), which the provider keeps to claim results the payer does not pay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<WireOrder>,
    /// Blobs of these tasks the provider fetches from storage hosts rather than from the
    /// requester (at most one per input of each task).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<BlobSource>,
    /// Output files of at least this many bytes stay with the provider (until the job
    /// ends) and only their content id comes back ([`TaskResult::held`]); `None`: all
    /// come back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_over: Option<u64>,
    /// Blobs of these tasks held by other providers (outputs of earlier stages), fetched
    /// from them by content id before the requester is asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<Holders>,
    /// Small blobs of these tasks sent along (each at most [`MAX_INLINE_BLOB`] bytes, at
    /// most [`MAX_INLINE_BYTES`] in all), so no `Fetch` round trip is spent on them; the
    /// provider checks each against its content id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<InlineBlob>,
    /// The requester takes results in the answer: the provider may keep this `Assign`
    /// unanswered for up to [`REPLY_HOLD_MS`] and answer with the job's next report
    /// ([`ResponseBody::Report`]) if one is due by then, saving tiny tasks an exchange.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reply_with_results: bool,
}

/// A small blob carried in an [`Assign`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineBlob {
    pub id: ContentId,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Largest blob an [`Assign`] carries along, and most bytes of them in one.
pub const MAX_INLINE_BLOB: usize = 4 << 10;
pub const MAX_INLINE_BYTES: usize = 1 << 20;

/// Providers holding a blob (peer ids as bytes, at most [`MAX_SOURCE_HOSTS`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holders {
    pub id: ContentId,
    pub peers: Vec<serde_bytes::ByteBuf>,
    /// Where they listen, as they told the requester (each ends in `/p2p/<peer>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
}

/// Where a blob lives other than with the requester: file `path` of the stored data
/// `manifest` (`naac://<manifest>/<path>`), read from any `k` of its storage hosts and
/// checked against `id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobSource {
    pub id: ContentId,
    pub manifest: ContentId,
    pub path: String,
    /// Peer ids (bytes) of hosts the requester found holding its shards: asked first, the
    /// DHT only when they do not hold enough (at most [`MAX_SOURCE_HOSTS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<serde_bytes::ByteBuf>,
    /// For private data: a data token handed on to the provider this `Assign` goes to (its
    /// peer key is the holder), which it shows the storage hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Most hosts a [`BlobSource`] names.
pub const MAX_SOURCE_HOSTS: usize = 256;

pub use serde_bytes::ByteBuf;

/// A payer's signed order, as the bank's ledger defines it (`naac_ledger::SignedOrder`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireOrder {
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// One run of one task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskSpec {
    pub index: u32,
    pub attempt: u32,
    pub args: Vec<String>,
    pub stdin: Option<ContentId>,
    /// Files for `/in`: plain name and content id.
    pub inputs: Vec<(String, ContentId)>,
    /// Seeds the guest's virtual clock and random source.
    pub seed: ContentId,
    /// A checkpoint (by content id, fetched like an input) to resume from.
    pub resume: Option<ContentId>,
    /// The guest's environment (at most [`MAX_TASK_ENV`] variables); bound into `seed` by
    /// the requester, so replicas agree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
}

/// Most environment variables one task gets.
pub const MAX_TASK_ENV: usize = 64;

impl TaskSpec {
    /// The digest of the task's inputs that result records bind.
    pub fn input_digest(&self, argv0: &str) -> ContentId {
        naac_types::record::input_digest(
            argv0,
            self.args.iter().map(String::as_str),
            self.stdin.as_ref(),
            self.inputs.iter().map(|(n, id)| (n.as_str(), id)),
            &self.seed,
        )
    }
}

/// Finished results plus every attempt still held: queued, running, or finished but not yet
/// acknowledged. The report renews the provider's lease; an attempt the requester assigned
/// a while ago that is missing from `held` is treated as lost.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub job: JobId,
    pub results: Vec<TaskResult>,
    /// `(task, attempt)` pairs.
    pub held: Vec<(u32, u32)>,
    /// The highest `Assign::seq` applied when `held` was taken.
    pub seen_seq: u64,
    /// Attempts handed back unfinished (the owner's policy paused them past its grace
    /// period, or stopped them before they started): reassign them, they did not fail.
    pub returned: Vec<(u32, u32)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskResult {
    pub index: u32,
    pub attempt: u32,
    /// `None` when the provider could not run the task at all (see `message`).
    pub outcome: Option<Outcome>,
    pub exit_code: Option<i32>,
    pub message: String,
    pub fuel_used: u64,
    /// Run time on the provider, microseconds.
    pub wall_us: u64,
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
    pub outputs: Vec<OutputFile>,
    /// The provider's ed25519 signature over the [`naac_types::ResultRecord`] of this run.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// Checkpoints the guest took in this run.
    pub checkpoints: u32,
    /// The checkpoint this run resumed from.
    pub resumed: Option<ContentId>,
    /// Output files the provider kept instead of sending (`Assign::hold_over`): their
    /// names, content ids and lengths. Later stages fetch them from it by content id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldOutput>,
}

/// An output file that stayed with the provider that made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldOutput {
    /// Path relative to `/out`, `/`-separated.
    pub name: String,
    pub id: ContentId,
    pub len: u64,
}

/// Most output files a result may name as held.
pub const MAX_HELD_OUTPUTS: usize = 4096;

impl TaskResult {
    /// The digest replicas compare (see [`naac_types::record::output_digest`]): the same
    /// whether a file came along or stayed with the provider.
    pub fn output_digest(&self) -> ContentId {
        let sent = self
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), ContentId::of(&o.data)));
        let held = self.held.iter().map(|h| (h.name.as_str(), h.id));
        naac_types::record::output_digest_of(
            self.outcome,
            self.exit_code,
            &ContentId::of(&self.stdout),
            sent.chain(held),
        )
    }

    /// Approximate encoded size, for batching.
    pub fn size(&self) -> usize {
        256 + self.message.len()
            + self.signature.len()
            + self.stdout.len()
            + self.stderr.len()
            + self
                .outputs
                .iter()
                .map(|o| o.name.len() + o.data.len() + 16)
                .sum::<usize>()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to `/out`, `/`-separated.
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Most signed requests in one [`BankRequest::Submit`].
pub const MAX_BANK_BATCH: usize = 1024;
/// Most entries in one [`BankResponse::Entries`].
pub const MAX_BANK_ENTRIES: u32 = 10_000;

/// A request to a bank (a node started with `--bank`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum BankRequest {
    /// The bank's key, grant and latest checkpoint.
    Info,
    /// An account's balance (read-only; an account gets the bank's grant with its first
    /// signed request).
    Balance { account: AccountKey },
    /// Transfers, escrows, settlements, refunds: applied in order, each answered.
    Submit(Vec<SignedRequest>),
    /// Entries touching `account`, newest first, with seq below `before`.
    History {
        account: Account,
        before: Option<u64>,
        limit: u32,
    },
    /// Entries `from..from + limit` in order (at most [`MAX_BANK_ENTRIES`]).
    Entries { from: u64, limit: u32 },
    /// An inclusion proof of entry `seq` against the latest checkpoint.
    Proof { seq: u64 },
    /// A proof that the tree of size `new` extends the tree of size `old`.
    Consistency { old: u64, new: u64 },
    /// The signed checkpoint of this size (`None`: the latest).
    Checkpoint { size: Option<u64> },
    /// The escrow of a job, as the bank's books have it now (`None`: it has none), with
    /// what its payer's committed orders reserve for `provider`.
    Escrow {
        job: JobId,
        #[serde(default)]
        provider: Option<AccountKey>,
    },
    /// Which of these keys have standing (the operator registered them as providers): only
    /// their asks may set another provider's price (at most [`MAX_STANDING_QUERY`]).
    Standing { accounts: Vec<AccountKey> },
    /// Which of these runs (task, attempt) of `job` are unresolved: neither paid nor
    /// rejected by the payer (at most [`MAX_STANDING_QUERY`]). A provider asks before it
    /// claims, so it claims only what is still owed.
    Unresolved {
        job: JobId,
        provider: AccountKey,
        runs: Vec<(u32, u32)>,
    },
}

/// Most keys one [`BankRequest::Standing`] asks about.
pub const MAX_STANDING_QUERY: usize = 4096;

/// A bank's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum BankResponse {
    Info(BankInfo),
    Balance {
        balance: Credits,
        checkpoint: Option<TreeHead>,
    },
    /// One answer per submitted request, in order.
    Submitted(Vec<Result<Receipt, String>>),
    Entries(Vec<Entry>),
    Proof(Box<EntryProof>),
    Consistency(Vec<Hash>),
    Checkpoint(Option<TreeHead>),
    /// One answer per key asked about, in order.
    Standing(Vec<bool>),
    /// One answer per run asked about, in order: `true` when still unresolved.
    Unresolved(Vec<bool>),
    Escrow(Option<EscrowView>),
}

/// A job's escrow as a provider checks it before running paid work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowView {
    /// Who funded it: the only one who may pay from it, unless `controller`.
    pub payer: AccountKey,
    /// Opened with a spend token: its holder, who signs for the escrow (its orders, its
    /// payments) while `payer`'s wallet funds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<AccountKey>,
    /// What is still in it.
    pub left: Credits,
    /// The most it pays per giga-fuel.
    pub max_price: Price,
    /// The most fuel one paid result may claim.
    pub fuel_limit: u64,
    /// Refunded: nothing more is paid from it.
    pub closed: bool,
    /// When it expires (Unix milliseconds): the bank refunds it then.
    #[serde(default)]
    pub expires_ms: u64,
    /// How long providers may claim unpaid results before it is refunded (0: no claims).
    #[serde(default)]
    pub claim_window_ms: u64,
    /// Its payer closed it: providers may claim now, until `expires_ms`.
    #[serde(default)]
    pub closing: bool,
    /// What its payer's committed orders hold for the provider who asked (see
    /// `BankRequest::Escrow`): only paying it, or rejecting one of its runs, frees that.
    #[serde(default)]
    pub reserved_for: Credits,
}

impl EscrowView {
    /// Who signs for the escrow: its controller, else its payer.
    pub fn signer(&self) -> AccountKey {
        self.controller.unwrap_or(self.payer)
    }
}

/// An entry, its inclusion proof and the signed checkpoint it is proven against.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EntryProof {
    pub entry: Entry,
    pub proof: InclusionProof,
    pub checkpoint: TreeHead,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BankInfo {
    pub bank: AccountKey,
    /// What a new account is given.
    pub grant: Credits,
    pub entries: u64,
    pub checkpoint: Option<TreeHead>,
}

/// The bank's acknowledgement of one applied request: durable when sent, and signed — a
/// promise, like Certificate Transparency's signed timestamps, that its ledger holds the
/// entry `hash` at `seq`. A ledger served later without it convicts the bank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub seq: u64,
    pub hash: Hash,
    pub amount: Credits,
    /// It had been applied before (nothing changed this time).
    pub duplicate: bool,
    /// The bank's signature over [`Receipt::signing_bytes`].
    #[serde(default, with = "serde_bytes")]
    pub sig: Vec<u8>,
}

const RECEIPT_DOMAIN: &[u8] = b"naac bank receipt v1\0";

impl Receipt {
    /// What the bank with key `bank` signs: the domain, its key, the entry's seq, hash and
    /// amount.
    pub fn signing_bytes(&self, bank: &[u8; 32]) -> Vec<u8> {
        let mut b = RECEIPT_DOMAIN.to_vec();
        b.extend_from_slice(bank);
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.hash);
        b.extend_from_slice(&self.amount.0.to_le_bytes());
        b
    }

    /// Whether the bank with key `bank` signed this receipt.
    pub fn signed_by(&self, bank: &[u8; 32]) -> bool {
        naac_types::sig::verify(bank, &self.signing_bytes(bank), &self.sig)
    }
}
