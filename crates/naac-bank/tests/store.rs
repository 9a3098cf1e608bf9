//! The ledger stores' shared suite: every test is written once against a [`Harness`] and
//! run for SQLite (in a temporary directory) and for PostgreSQL (in a fresh schema of the
//! server `NAAC_TEST_POSTGRES` names, dropped afterwards).
//!
//! Without `NAAC_TEST_POSTGRES` the PostgreSQL tests say they were skipped and pass, unless
//! `NAAC_REQUIRE_POSTGRES=1` (CI), which makes them fail. To run them locally:
//!
//! ```sh
//! export NAAC_TEST_POSTGRES="$(scripts/postgres.sh start)"
//! cargo test -p naac-bank --test store -- --nocapture
//! ```

use naac_bank::store::{self, PgStore, SqliteStore, Store, StoreError};
use naac_ledger::{Account, AccountKey, Entry, Hash, Kind, TreeHead};
use naac_types::{Credits, JobId};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

// ---------------------------------------------------------------------------------------
// Backends

/// One test's database: where it is, how to open a store on it and how to change it
/// behind the store's back.
struct Harness {
    db: Db,
}

enum Db {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        /// The server's connection string, as given.
        base: String,
        /// The same with `search_path` set to this test's schema.
        conninfo: String,
        schema: String,
    },
}

static SCHEMAS: AtomicU32 = AtomicU32::new(0);

impl Harness {
    fn sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("books").join("ledger.db");
        Harness {
            db: Db::Sqlite { _dir: dir, path },
        }
    }

    /// A fresh schema on the server `NAAC_TEST_POSTGRES` names, or `None` (after saying
    /// so) when it is unset and `NAAC_REQUIRE_POSTGRES` is not `1`.
    fn postgres(test: &str) -> Option<Harness> {
        let base = match std::env::var("NAAC_TEST_POSTGRES") {
            Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
            _ => {
                if std::env::var("NAAC_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                    panic!(
                        "NAAC_REQUIRE_POSTGRES=1 but NAAC_TEST_POSTGRES is unset; run \
                         export NAAC_TEST_POSTGRES=\"$(scripts/postgres.sh start)\""
                    );
                }
                println!(
                    "skipped postgres test {test}: NAAC_TEST_POSTGRES is unset (export \
                     NAAC_TEST_POSTGRES=\"$(scripts/postgres.sh start)\" to run it)"
                );
                return None;
            }
        };
        let n = SCHEMAS.fetch_add(1, Ordering::Relaxed);
        let mut schema = format!("naac_t{}_{n}_{test}", std::process::id());
        schema.truncate(63);
        let mut admin = ::postgres::Client::connect(&base, ::postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to NAAC_TEST_POSTGRES={base}: {e}"));
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .expect("create schema");
        let conninfo = with_search_path(&base, &schema);
        Some(Harness {
            db: Db::Postgres {
                base,
                conninfo,
                schema,
            },
        })
    }

    fn name(&self) -> &'static str {
        match self.db {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres { .. } => "postgres",
        }
    }

    /// A store on this test's database (a new connection each time).
    fn open(&self) -> Box<dyn Store> {
        match &self.db {
            Db::Sqlite { path, .. } => Box::new(SqliteStore::open(path).expect("open sqlite")),
            Db::Postgres { conninfo, .. } => {
                Box::new(PgStore::connect(conninfo).expect("connect postgres"))
            }
        }
    }

    /// The same, through [`store::open`].
    fn open_by_url(&self) -> Box<dyn Store> {
        let url = match &self.db {
            Db::Sqlite { path, .. } => format!("sqlite:{}", path.display()),
            Db::Postgres { conninfo, .. } => conninfo.clone(),
        };
        store::open(&url).expect("store::open")
    }

    /// Runs SQL on the database directly, as an operator (or an attacker) would.
    fn exec(&self, sql: &str) {
        match &self.db {
            Db::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .and_then(|c| c.execute_batch(sql))
                .unwrap_or_else(|e| panic!("sqlite {sql}: {e}")),
            Db::Postgres { conninfo, .. } => {
                ::postgres::Client::connect(conninfo, ::postgres::NoTls)
                    .and_then(|mut c| c.batch_execute(sql))
                    .unwrap_or_else(|e| panic!("postgres {sql}: {e}"))
            }
        }
    }

    /// An SQL literal of a byte string.
    fn bytes(&self, b: &[u8]) -> String {
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        match self.db {
            Db::Sqlite { .. } => format!("X'{hex}'"),
            Db::Postgres { .. } => format!("'\\x{hex}'::bytea"),
        }
    }

    /// Makes the database refuse to store a checkpoint of this size (a trigger), to fail a
    /// transaction after its entries were inserted.
    fn refuse_checkpoint(&self, size: u64) {
        match self.db {
            Db::Sqlite { .. } => self.exec(&format!(
                "CREATE TRIGGER refuse BEFORE INSERT ON checkpoints WHEN NEW.size = {size}
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
            )),
            Db::Postgres { .. } => self.exec(&format!(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN IF NEW.size = {size} THEN RAISE EXCEPTION 'refused by the test'; END IF;
                 RETURN NEW; END $$;
                 CREATE TRIGGER refuse BEFORE INSERT ON checkpoints
                 FOR EACH ROW EXECUTE FUNCTION refuse();"
            )),
        }
    }

    /// Marks the database as written by a future naac.
    fn set_schema_version(&self, v: i64) {
        match self.db {
            Db::Sqlite { .. } => self.exec(&format!("PRAGMA user_version = {v}")),
            Db::Postgres { .. } => self.exec(&format!("UPDATE schema_version SET version = {v}")),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Db::Postgres { base, schema, .. } = &self.db {
            let dropped = ::postgres::Client::connect(base, ::postgres::NoTls)
                .and_then(|mut c| c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")));
            if let Err(e) = dropped {
                eprintln!("could not drop test schema {schema}: {e}");
            }
        }
    }
}

/// `base` with the session's `search_path` set to `schema` (libpq `options`).
fn with_search_path(base: &str, schema: &str) -> String {
    if base.starts_with("postgres://") || base.starts_with("postgresql://") {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{schema}")
    } else {
        format!("{base} options='-c search_path={schema}'")
    }
}

/// Runs each named test function for both backends.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Harness::sqlite());
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(h) = super::Harness::postgres(stringify!($name)) {
                        super::$name(&h);
                    }
                }
            )*
        }
    };
}

suite!(
    round_trip,
    refuses_gap_and_overlap,
    refuses_values_above_i64_max,
    refuses_nul_in_memo,
    history_newest_first_with_paging,
    checkpoints_by_size,
    append_with_checkpoint_is_atomic,
    reopen_keeps_everything,
    tampered_amount_reads_back_and_breaks_the_chain,
    corrupt_rows_are_errors,
    two_writers_cannot_fork,
    newer_schema_refused,
    open_by_url,
    append_rate,
);

// ---------------------------------------------------------------------------------------
// Entries

fn key(n: u8) -> AccountKey {
    AccountKey([n; 32])
}

fn job(n: u8) -> JobId {
    JobId([n; 16])
}

const ALICE: Account = Account::User(AccountKey([0xa1; 32]));
const BOB: Account = Account::User(AccountKey([0xb0; 32]));
const JOB1: Account = Account::Escrow(JobId([0x11; 16]));
const JOB2: Account = Account::Escrow(JobId([0x22; 16]));
const ACCOUNTS: [Account; 6] = [
    Account::Mint,
    ALICE,
    BOB,
    Account::User(AccountKey([0xc0; 32])),
    JOB1,
    JOB2,
];

const MEMOS: [&str; 5] = [
    "",
    "grant",
    "naïve café ☕ — 日本語 🚀",
    "quote ' and \" and \\ backslash; DROP TABLE entries; --",
    "long",
];

/// Makes entries with a valid hash chain and varied fields: every kind and account
/// variant, optional fields both ways, unicode memos, auth and signature bytes.
struct Chain {
    next: u64,
    prev: Hash,
    rng: u64,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            next: 0,
            prev: [0; 32],
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.rand() as u8).collect()
    }

    fn entry(&mut self) -> Entry {
        let i = self.next;
        let r = self.rand();
        let debit = ACCOUNTS[(r % 6) as usize];
        // Every 17th entry moves credits from an account to itself.
        let credit = if i % 17 == 5 {
            debit
        } else {
            ACCOUNTS[((r >> 8) % 6) as usize]
        };
        let amount = match i % 11 {
            0 => 0,
            1 => i64::MAX as u64,
            _ => self.rand() % 1_000_000_000_000,
        };
        let memo = match MEMOS[(i % 5) as usize] {
            "long" => "é".repeat(100),
            m => m.to_string(),
        };
        let auth_len = (self.rand() % 600) as usize;
        let e = Entry {
            seq: i,
            prev: self.prev,
            time_ms: 1_700_000_000_000 + i * 37 + (self.rand() % 10),
            kind: [
                Kind::Grant,
                Kind::Transfer,
                Kind::Escrow,
                Kind::Settle,
                Kind::Refund,
            ][(i % 5) as usize],
            debit,
            credit,
            amount: Credits(amount),
            job: i.is_multiple_of(2).then(|| job((i % 200) as u8)),
            task: match i % 3 {
                0 => None,
                1 => Some(u32::MAX),
                _ => Some((self.rand() % 1000) as u32),
            },
            record: (i % 4 != 1).then(|| {
                let b = self.bytes(32);
                b.try_into().expect("32 bytes")
            }),
            memo,
            authorizer: key((i % 7) as u8),
            auth: self.bytes(auth_len),
            sig: if i % 9 == 8 {
                Vec::new()
            } else {
                self.bytes(64)
            },
        };
        self.next += 1;
        self.prev = e.hash();
        e
    }

    fn take(&mut self, n: usize) -> Vec<Entry> {
        (0..n).map(|_| self.entry()).collect()
    }
}

fn entries(n: usize) -> Vec<Entry> {
    Chain::new().take(n)
}

fn checkpoint(size: u64, entries: &[Entry]) -> TreeHead {
    let head = match size {
        0 => [0; 32],
        s => entries.get(s as usize - 1).map_or([0xee; 32], Entry::hash),
    };
    TreeHead {
        size,
        root: [size as u8; 32],
        head,
        time_ms: 1_700_000_000_000 + size,
        bank: key(0xba),
        sig: vec![size as u8; 64],
    }
}

fn append_in_batches(s: &mut dyn Store, entries: &[Entry], batch: usize) {
    for chunk in entries.chunks(batch) {
        s.append(chunk).expect("append");
    }
}

// ---------------------------------------------------------------------------------------
// The suite

fn round_trip(h: &Harness) {
    let all = entries(120);
    for w in all.windows(2) {
        assert_eq!(w[1].prev, w[0].hash(), "the generator chains");
    }
    let mut s = h.open();
    assert_eq!(s.len().expect("len"), 0);
    assert!(s.is_empty().expect("is_empty"));
    assert_eq!(s.read(0, 10).expect("read"), vec![]);
    s.append(&[]).expect("appending nothing");
    assert_eq!(s.len().expect("len"), 0);

    // Batches of assorted sizes, one entry alone.
    s.append(&all[..1]).expect("append 1");
    s.append(&all[1..8]).expect("append 7");
    s.append(&all[8..50]).expect("append 42");
    s.append(&all[50..]).expect("append 70");
    assert_eq!(s.len().expect("len"), 120);
    assert!(!s.is_empty().expect("is_empty"));

    assert_eq!(s.read(0, 1000).expect("read all"), all);
    assert_eq!(s.read(10, 5).expect("read 10..15"), all[10..15]);
    assert_eq!(s.read(115, 10).expect("read the tail"), all[115..]);
    assert_eq!(s.read(119, 1).expect("read the last"), all[119..]);
    assert_eq!(s.read(120, 10).expect("read past the end"), vec![]);
    assert_eq!(s.read(3, 0).expect("read nothing"), vec![]);
    assert_eq!(s.read(u64::MAX, 10).expect("read far away"), vec![]);
    assert_eq!(
        s.read(i64::MAX as u64, usize::MAX).expect("read huge"),
        vec![]
    );
    assert_eq!(s.read(0, usize::MAX).expect("read unlimited"), all);
    assert!(s.describe().starts_with(h.name()), "{}", s.describe());
}

fn refuses_gap_and_overlap(h: &Harness) {
    let all = entries(30);
    let mut s = h.open();

    // The first entry must be seq 0.
    let e = s.append(&all[1..3]).expect_err("starts at 1");
    assert!(
        matches!(
            e,
            StoreError::Seq {
                expected: 0,
                got: 1
            }
        ),
        "{e}"
    );

    s.append(&all[..10]).expect("append 0..10");

    let e = s.append(&all[11..15]).expect_err("a gap");
    assert!(
        matches!(
            e,
            StoreError::Seq {
                expected: 10,
                got: 11
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("must have seq 10 but got seq 11"),
        "{e}"
    );

    let e = s.append(&all[9..15]).expect_err("an overlap");
    assert!(
        matches!(
            e,
            StoreError::Seq {
                expected: 10,
                got: 9
            }
        ),
        "{e}"
    );

    let e = s.append(&all[..5]).expect_err("a replay");
    assert!(
        matches!(
            e,
            StoreError::Seq {
                expected: 10,
                got: 0
            }
        ),
        "{e}"
    );

    // A batch that starts right but skips inside: nothing of it is kept.
    let skipping = [all[10].clone(), all[11].clone(), all[13].clone()];
    let e = s.append(&skipping).expect_err("a gap inside the batch");
    assert!(
        matches!(
            e,
            StoreError::Seq {
                expected: 12,
                got: 13
            }
        ),
        "{e}"
    );
    let repeating = [all[10].clone(), all[11].clone(), all[11].clone()];
    let e = s.append(&repeating).expect_err("a repeat inside the batch");
    assert!(
        matches!(
            e,
            StoreError::Seq {
                expected: 12,
                got: 11
            }
        ),
        "{e}"
    );

    // The same through append_with_checkpoint: the checkpoint is not kept either.
    let e = s
        .append_with_checkpoint(&all[11..15], &checkpoint(15, &all))
        .expect_err("a gap with a checkpoint");
    assert!(
        matches!(
            e,
            StoreError::Seq {
                expected: 10,
                got: 11
            }
        ),
        "{e}"
    );
    assert_eq!(s.latest_checkpoint().expect("latest"), None);

    assert_eq!(s.len().expect("len"), 10);
    assert_eq!(s.read(0, 100).expect("read"), all[..10]);

    // And the store goes on from where it was.
    s.append(&all[10..30]).expect("append 10..30");
    assert_eq!(s.read(0, 100).expect("read"), all);
}

fn refuses_values_above_i64_max(h: &Harness) {
    let mut all = entries(20);
    let mut s = h.open();
    s.append(&all[..10]).expect("append");

    // i64::MAX itself fits (the generator puts it in entry 1).
    assert_eq!(all[1].amount.0, i64::MAX as u64);
    assert_eq!(s.read(1, 1).expect("read")[0].amount.0, i64::MAX as u64);

    let big = i64::MAX as u64 + 1;
    let mut batch = all[10..15].to_vec();
    batch[3].amount = Credits(big);
    let e = s.append(&batch).expect_err("amount above i64::MAX");
    assert!(
        matches!(&e, StoreError::TooLarge { value, what } if *value == big && what.contains("amount of entry 13")),
        "{e}"
    );
    assert!(e.to_string().contains("refused rather than wrapped"), "{e}");

    let mut batch = all[10..15].to_vec();
    batch[0].time_ms = u64::MAX;
    let e = s.append(&batch).expect_err("time above i64::MAX");
    assert!(
        matches!(
            &e,
            StoreError::TooLarge {
                value: u64::MAX,
                ..
            }
        ),
        "{e}"
    );

    let mut cp = checkpoint(10, &all);
    cp.time_ms = big;
    let e = s
        .append_with_checkpoint(&all[10..15], &cp)
        .expect_err("checkpoint time above i64::MAX");
    assert!(matches!(&e, StoreError::TooLarge { .. }), "{e}");
    let mut cp = checkpoint(10, &all);
    cp.size = u64::MAX;
    let e = s.put_checkpoint(&cp).expect_err("size above i64::MAX");
    assert!(matches!(&e, StoreError::TooLarge { .. }), "{e}");
    assert_eq!(s.checkpoint(u64::MAX).expect("checkpoint"), None);

    // Nothing of the refused writes was kept.
    assert_eq!(s.len().expect("len"), 10);
    assert_eq!(s.latest_checkpoint().expect("latest"), None);
    all.truncate(10);
    assert_eq!(s.read(0, 100).expect("read"), all);
}

fn refuses_nul_in_memo(h: &Harness) {
    let mut all = entries(3);
    all[2].memo = "a\0b".into();
    let mut s = h.open();
    let e = s.append(&all).expect_err("NUL in a memo");
    assert!(matches!(&e, StoreError::Unstorable { seq: 2, .. }), "{e}");
    assert_eq!(s.len().expect("len"), 0);
}

fn history_newest_first_with_paging(h: &Harness) {
    let all = entries(300);
    let mut s = h.open();
    append_in_batches(&mut *s, &all, 64);

    for account in [ALICE, JOB1, Account::Mint, BOB] {
        let expected: Vec<Entry> = all
            .iter()
            .rev()
            .filter(|e| e.debit == account || e.credit == account)
            .cloned()
            .collect();
        assert!(
            expected.len() > 20,
            "the generator touches {account:?} often"
        );
        assert!(
            expected.iter().any(|e| e.debit == e.credit),
            "some entry moves {account:?} to itself"
        );

        assert_eq!(
            s.history(&account, None, 10_000).expect("history"),
            expected
        );
        assert_eq!(
            s.history(&account, None, 5).expect("history"),
            expected[..5]
        );

        // Page backwards with `before`.
        for page in [1, 7, 50] {
            let mut got = Vec::new();
            let mut before = None;
            loop {
                let batch = s.history(&account, before, page).expect("a page");
                assert!(batch.len() <= page);
                let Some(last) = batch.last() else { break };
                before = Some(last.seq);
                got.extend(batch);
            }
            assert_eq!(got, expected, "{account:?} in pages of {page}");
        }

        let cut = expected[expected.len() / 2].seq;
        let older: Vec<Entry> = expected.iter().filter(|e| e.seq < cut).cloned().collect();
        assert_eq!(
            s.history(&account, Some(cut), 10_000).expect("before"),
            older
        );
        assert_eq!(s.history(&account, Some(0), 10).expect("before 0"), vec![]);
        assert_eq!(s.history(&account, None, 0).expect("limit 0"), vec![]);
        assert_eq!(
            s.history(&account, Some(u64::MAX), 10_000)
                .expect("before max"),
            expected
        );
    }
    let stranger = Account::User(key(0x77));
    assert_eq!(s.history(&stranger, None, 10).expect("history"), vec![]);
}

fn checkpoints_by_size(h: &Harness) {
    let all = entries(30);
    let mut s = h.open();
    assert_eq!(s.latest_checkpoint().expect("latest"), None);
    assert_eq!(s.checkpoint(0).expect("checkpoint"), None);

    s.append(&all).expect("append");
    for size in [0, 10, 30, 20] {
        s.put_checkpoint(&checkpoint(size, &all)).expect("put");
    }
    assert_eq!(
        s.latest_checkpoint().expect("latest"),
        Some(checkpoint(30, &all))
    );
    for size in [0, 10, 20, 30] {
        assert_eq!(
            s.checkpoint(size).expect("checkpoint"),
            Some(checkpoint(size, &all))
        );
    }
    assert_eq!(s.checkpoint(15).expect("checkpoint"), None);
    assert_eq!(s.checkpoint(u64::MAX).expect("checkpoint"), None);

    // Storing a checkpoint of the same size again replaces it.
    let mut again = checkpoint(20, &all);
    again.time_ms += 1;
    again.sig = vec![0x5a; 64];
    s.put_checkpoint(&again).expect("put again");
    assert_eq!(s.checkpoint(20).expect("checkpoint"), Some(again));
    assert_eq!(
        s.latest_checkpoint().expect("latest"),
        Some(checkpoint(30, &all))
    );

    // Checkpoints leave the entries alone.
    assert_eq!(s.read(0, 100).expect("read"), all);
}

fn append_with_checkpoint_is_atomic(h: &Harness) {
    let all = entries(30);
    let mut s = h.open();
    s.append_with_checkpoint(&all[..10], &checkpoint(10, &all))
        .expect("append with checkpoint");
    assert_eq!(s.len().expect("len"), 10);
    assert_eq!(
        s.latest_checkpoint().expect("latest"),
        Some(checkpoint(10, &all))
    );

    // The database refuses the checkpoint after the entries went in: neither is kept.
    h.refuse_checkpoint(20);
    let e = s
        .append_with_checkpoint(&all[10..20], &checkpoint(20, &all))
        .expect_err("the database refuses the checkpoint");
    assert!(e.to_string().contains("refused by the test"), "{e}");
    assert_eq!(s.len().expect("len"), 10);
    assert_eq!(s.read(0, 100).expect("read"), all[..10]);
    assert_eq!(
        s.latest_checkpoint().expect("latest"),
        Some(checkpoint(10, &all))
    );
    assert_eq!(s.checkpoint(20).expect("checkpoint"), None);

    // Another connection sees the same.
    let mut other = h.open();
    assert_eq!(other.len().expect("len"), 10);
    assert_eq!(other.checkpoint(20).expect("checkpoint"), None);

    // The store still works; entries alone and a checkpoint alone.
    s.append_with_checkpoint(&all[10..25], &checkpoint(25, &all))
        .expect("append with checkpoint");
    s.append_with_checkpoint(&[], &checkpoint(5, &all))
        .expect("a checkpoint alone");
    s.append(&all[25..]).expect("append");
    assert_eq!(s.read(0, 100).expect("read"), all);
    assert_eq!(
        s.latest_checkpoint().expect("latest"),
        Some(checkpoint(25, &all))
    );
    assert_eq!(
        s.checkpoint(5).expect("checkpoint"),
        Some(checkpoint(5, &all))
    );
}

fn reopen_keeps_everything(h: &Harness) {
    let all = entries(60);
    {
        let mut s = h.open();
        append_in_batches(&mut *s, &all[..40], 9);
        s.append_with_checkpoint(&all[40..50], &checkpoint(50, &all))
            .expect("append with checkpoint");
        s.put_checkpoint(&checkpoint(40, &all)).expect("put");
    }
    let mut s = h.open();
    assert_eq!(s.len().expect("len"), 50);
    assert_eq!(s.read(0, 100).expect("read"), all[..50]);
    assert_eq!(
        s.latest_checkpoint().expect("latest"),
        Some(checkpoint(50, &all))
    );
    assert_eq!(
        s.checkpoint(40).expect("checkpoint"),
        Some(checkpoint(40, &all))
    );
    // It goes on where it was.
    s.append(&all[50..]).expect("append after reopening");
    drop(s);
    assert_eq!(h.open().read(0, 100).expect("read"), all);
}

fn tampered_amount_reads_back_and_breaks_the_chain(h: &Harness) {
    let all = entries(10);
    let mut s = h.open();
    s.append(&all).expect("append");
    h.exec("UPDATE entries SET amount = amount + 1 WHERE seq = 3");

    let read = s.read(0, 100).expect("read");
    assert_eq!(read.len(), 10);
    assert_eq!(
        read[3].amount.0,
        all[3].amount.0 + 1,
        "read returns the row as stored"
    );
    let mut restored = read[3].clone();
    restored.amount = all[3].amount;
    assert_eq!(restored, all[3], "only the amount changed");
    assert_eq!(read[..3], all[..3]);
    assert_eq!(read[4..], all[4..]);
    // The stored hash column is not trusted: the rebuilt entry no longer chains.
    assert_ne!(read[4].prev, read[3].hash());
    assert_eq!(read[3].prev, read[2].hash());
}

fn corrupt_rows_are_errors(h: &Harness) {
    let all = entries(10);
    let mut s = h.open();
    s.append(&all).expect("append");
    let cases = [
        (2, "kind = 'bogus'".to_string(), "kind"),
        (5, "debit = 'user:zz'".to_string(), "debit"),
        (6, "credit = 'escrow:00'".to_string(), "credit"),
        (7, format!("prev = {}", h.bytes(&[0])), "prev"),
        (
            8,
            format!("authorizer = {}", h.bytes(&[1; 31])),
            "authorizer",
        ),
        (4, format!("job = {}", h.bytes(&[1; 15])), "job"),
        (3, "amount = -1".to_string(), "amount"),
        (9, "task = 4294967296".to_string(), "task"),
    ];
    for (seq, set, what) in cases {
        let saved = s.read(seq, 1).expect("read the row first");
        h.exec(&format!("UPDATE entries SET {set} WHERE seq = {seq}"));
        let e = s.read(0, 100).expect_err("a corrupt row");
        match &e {
            StoreError::Corrupt { seq: at, what: why } => {
                assert_eq!(*at, seq, "{e}");
                assert!(why.contains(what), "{e}");
            }
            other => panic!("expected Corrupt for {set}, got {other}"),
        }
        assert!(
            e.to_string()
                .starts_with(&format!("ledger entry {seq} is corrupt")),
            "{e}"
        );
        // History over the row fails the same way; reads around it work.
        let touched = if what == "debit" {
            saved[0].credit
        } else {
            saved[0].debit
        };
        let e = s.history(&touched, None, 100).expect_err("history over it");
        assert!(
            matches!(e, StoreError::Corrupt { seq: at, .. } if at == seq),
            "{e}"
        );
        assert_eq!(
            s.read(0, seq as usize).expect("before it"),
            all[..seq as usize]
        );
        // Put it back.
        h.exec(&format!("DELETE FROM entries WHERE seq = {seq}"));
        restore_row(h, &saved[0]);
        assert_eq!(s.read(0, 100).expect("restored"), all);
    }

    // A checkpoint row too.
    s.put_checkpoint(&checkpoint(10, &all)).expect("put");
    h.exec(&format!(
        "UPDATE checkpoints SET root = {} WHERE size = 10",
        h.bytes(&[1, 2])
    ));
    let e = s.latest_checkpoint().expect_err("a corrupt checkpoint");
    assert!(
        matches!(&e, StoreError::CorruptCheckpoint { size: 10, what } if what.contains("root")),
        "{e}"
    );
    let e = s.checkpoint(10).expect_err("a corrupt checkpoint");
    assert!(
        matches!(&e, StoreError::CorruptCheckpoint { size: 10, .. }),
        "{e}"
    );
}

/// Writes `e` back as a row after its corrupt copy was deleted (a store only appends at
/// the end, so this goes through SQL).
fn restore_row(h: &Harness, e: &Entry) {
    let opt = |b: Option<&[u8]>| b.map_or("NULL".to_string(), |b| h.bytes(b));
    let sql = format!(
        "INSERT INTO entries (seq, prev, hash, time_ms, kind, debit, credit, amount, job, \
         task, record, memo, authorizer, auth, sig) VALUES ({}, {}, {}, {}, '{}', '{}', '{}', \
         {}, {}, {}, {}, '{}', {}, {}, {})",
        e.seq,
        h.bytes(&e.prev),
        h.bytes(&e.hash()),
        e.time_ms,
        e.kind.as_str(),
        e.debit.to_text(),
        e.credit.to_text(),
        e.amount.0,
        opt(e.job.as_ref().map(|j| &j.0[..])),
        e.task.map_or("NULL".to_string(), |t| t.to_string()),
        opt(e.record.as_ref().map(|r| &r[..])),
        e.memo.replace('\'', "''"),
        h.bytes(&e.authorizer.0),
        h.bytes(&e.auth),
        h.bytes(&e.sig),
    );
    h.exec(&sql);
}

fn two_writers_cannot_fork(h: &Harness) {
    let all = entries(20);
    let mut a = h.open();
    let mut b = h.open();
    a.append(&all[..10]).expect("a appends");
    // b still believes nothing of it; it must not append a second seq 0 or skip ahead.
    let e = b.append(&all[..5]).expect_err("b replays");
    assert!(
        matches!(
            e,
            StoreError::Seq {
                expected: 10,
                got: 0
            }
        ),
        "{e}"
    );
    b.append(&all[10..]).expect("b continues");
    assert_eq!(a.read(0, 100).expect("read"), all);
}

fn newer_schema_refused(h: &Harness) {
    drop(h.open());
    h.set_schema_version(99);
    let e = match &h.db {
        Db::Sqlite { path, .. } => SqliteStore::open(path).err(),
        Db::Postgres { conninfo, .. } => PgStore::connect(conninfo).err(),
    }
    .expect("a newer schema is refused");
    assert!(
        matches!(
            e,
            StoreError::NewerSchema {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade naac"), "{e}");
}

fn open_by_url(h: &Harness) {
    let all = entries(5);
    let mut s = h.open_by_url();
    s.append(&all).expect("append");
    assert_eq!(h.open().read(0, 10).expect("read"), all);
    let d = s.describe();
    match &h.db {
        Db::Sqlite { path, .. } => assert_eq!(d, format!("sqlite:{}", path.display())),
        Db::Postgres { .. } => {
            assert!(d.starts_with("postgres:host="), "{d}");
            assert!(d.contains("dbname="), "{d}");
        }
    }
}

fn append_rate(h: &Harness) {
    const N: usize = 10_000;
    const BATCH: usize = 100;
    let all = entries(N);
    let mut s = h.open();
    let t = Instant::now();
    append_in_batches(&mut *s, &all, BATCH);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{}: appended {N} entries durably in batches of {BATCH} in {secs:.2} s: {:.0} entries/s",
        h.name(),
        N as f64 / secs
    );
    assert_eq!(s.len().expect("len"), N as u64);
    let t = Instant::now();
    let back = s.read(0, N).expect("read");
    println!(
        "{}: read {N} entries back in {:.2} s",
        h.name(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(back, all);
}

// ---------------------------------------------------------------------------------------
// PostgreSQL only

/// A PostgreSQL connection the server drops (a restart, a terminated backend) is made
/// again: the read that hit the drop is retried, later writes go through, nothing is lost.
#[test]
fn postgres_reconnects_after_the_server_drops_the_connection() {
    let Some(h) = Harness::postgres("reconnect") else {
        return;
    };
    let Db::Postgres { conninfo, .. } = &h.db else {
        unreachable!("a postgres harness")
    };
    let name = format!("naac_reconnect_{}", std::process::id());
    let tagged = if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let sep = if conninfo.contains('?') { '&' } else { '?' };
        format!("{conninfo}{sep}application_name={name}")
    } else {
        format!("{conninfo} application_name={name}")
    };
    let mut s = PgStore::connect(&tagged).expect("connect");
    let all = entries(20);
    s.append(&all[..10]).expect("append");
    let drop_backend = || {
        let mut admin = ::postgres::Client::connect(conninfo, ::postgres::NoTls).expect("admin");
        let n = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .expect("terminate")
            .len();
        // (A backend terminated a moment ago may still be listed.)
        assert!(n >= 1, "the store's backend");
    };
    drop_backend();
    assert_eq!(s.len().expect("a read retried on a new connection"), 10);
    drop_backend();
    // A write on a dropped connection may fail (its fate unknown to the writer); the next
    // one goes through on a new connection.
    if s.append(&all[10..15]).is_err() {
        assert_eq!(s.len().expect("len"), 10, "the failed write left nothing");
        s.append(&all[10..15]).expect("append after reconnecting");
    }
    s.append(&all[15..]).expect("append");
    assert_eq!(s.read(0, 100).expect("read"), all);
}

// ---------------------------------------------------------------------------------------
// SQLite only

#[test]
fn sqlite_read_only_sees_the_writers_commits() {
    let h = Harness::sqlite();
    let Db::Sqlite { path, .. } = &h.db else {
        unreachable!()
    };
    let all = entries(40);
    let mut writer = SqliteStore::open(path).expect("open");
    writer
        .append_with_checkpoint(&all[..10], &checkpoint(10, &all))
        .expect("append");

    let mut reader = SqliteStore::open_read_only(path).expect("open read-only");
    assert_eq!(reader.len().expect("len"), 10);
    assert_eq!(reader.read(0, 100).expect("read"), all[..10]);

    // Later commits show without reopening, while the writer stays open.
    writer
        .append_with_checkpoint(&all[10..30], &checkpoint(30, &all))
        .expect("append");
    assert_eq!(reader.len().expect("len"), 30);
    assert_eq!(reader.read(0, 100).expect("read"), all[..30]);
    assert_eq!(
        reader.latest_checkpoint().expect("latest"),
        Some(checkpoint(30, &all))
    );
    assert_eq!(
        reader.history(&ALICE, None, 100).expect("history"),
        writer.history(&ALICE, None, 100).expect("history")
    );

    let e = reader
        .append(&all[30..])
        .expect_err("a read-only store writes");
    assert!(matches!(e, StoreError::ReadOnly { .. }), "{e}");
    let e = reader
        .put_checkpoint(&checkpoint(30, &all))
        .expect_err("a read-only store writes");
    assert!(matches!(e, StoreError::ReadOnly { .. }), "{e}");

    // And after the writer is gone.
    writer.append(&all[30..]).expect("append");
    drop(writer);
    assert_eq!(reader.read(0, 100).expect("read"), all);
    drop(reader);
    let mut again = SqliteStore::open_read_only(path).expect("open read-only");
    assert_eq!(again.read(0, 100).expect("read"), all);
}

#[test]
fn sqlite_read_only_needs_an_existing_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.db");
    let e = SqliteStore::open_read_only(&missing)
        .err()
        .expect("a missing file");
    assert!(e.to_string().contains("no such file"), "{e}");
    assert!(!missing.exists(), "opening read-only creates nothing");

    let empty = dir.path().join("empty.db");
    rusqlite::Connection::open(&empty)
        .and_then(|c| c.execute_batch("CREATE TABLE other (x)"))
        .expect("another database");
    let e = SqliteStore::open_read_only(&empty)
        .err()
        .expect("not a ledger");
    assert!(matches!(e, StoreError::NoSchema { .. }), "{e}");
}

#[test]
fn sqlite_uses_wal_and_full_sync() {
    let h = Harness::sqlite();
    let Db::Sqlite { path, .. } = &h.db else {
        unreachable!()
    };
    let mut s = SqliteStore::open(path).expect("open");
    s.append(&entries(3)).expect("append");
    let c = rusqlite::Connection::open(path).expect("open");
    let mode: String = c
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    let version: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 1);
    // An operator reads the books with SQL.
    let (kind, debit, amount): (String, String, i64) = c
        .query_row(
            "SELECT kind, debit, amount FROM entries WHERE seq = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("a row");
    let e = &entries(3)[1];
    assert_eq!(kind, e.kind.as_str());
    assert_eq!(debit, e.debit.to_text());
    assert_eq!(amount as u64, e.amount.0);
}

#[test]
fn plain_path_opens_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.db");
    let mut s = store::open(path.to_str().expect("utf-8 path")).expect("open a path");
    s.append(&entries(2)).expect("append");
    assert_eq!(s.describe(), format!("sqlite:{}", path.display()));
}
