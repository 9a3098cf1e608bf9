//! The rolling escrow's accounts, without IO. A paid job escrows the copies it may have in
//! flight, not its worst case: the escrow opens with [`WINDOW`] copies' worth (or what the
//! payer has, if less) and is topped up as results are paid. Every copy started may cost
//! at most `max_price × fuel limit`; the scheduler may start a copy only while the escrow,
//! less what was paid from it, covers every copy started but not yet paid or dropped at
//! that cost (the scheduler's start limit). So a provider is never given work the escrow
//! could not pay, and a user's balance only has to cover the work in flight.
//!
//! When the payer's balance cannot fund the next copies the job is paused and says so;
//! it goes on when the balance allows (a top-up is tried again every few seconds).

use naac_sched::Millis;
use naac_types::Credits;

/// Copies one deposit funds (the first, and each top-up).
pub const WINDOW: u64 = 1024;
/// How long after a failed or short top-up the next one is tried.
const RETRY_MS: u64 = 5_000;

/// The escrow of a paid job, as its requester keeps count.
#[derive(Debug)]
pub struct Budget {
    /// The most one copy may cost: `max_price × fuel limit`.
    per_copy: Credits,
    /// Put into the escrow so far (opened plus top-ups the bank confirmed).
    deposited: Credits,
    /// The job's worst case over its expected copies: deposits stop there, unless retries
    /// need more and nothing else can start.
    worst: Credits,
    /// The most the job may deposit in all (its `budget.max_cost`), if capped.
    cap: Option<Credits>,
    /// A top-up is on its way to the bank.
    pending: bool,
    /// The last top-up's nonce.
    nonce: u64,
    /// No top-up before this.
    retry_at: Millis,
    /// A top-up sent whose answer never came: sent again exactly (same amount, same nonce),
    /// so the bank applies it once whatever happened to the first answer.
    resend: Option<(Credits, u64)>,
    /// Why the job cannot get more copies funded, while it cannot.
    paused: Option<String>,
}

/// Whether the payer's balance covered the top-up.
#[derive(Debug, PartialEq, Eq)]
pub enum TopUpOutcome {
    /// The escrow now holds this much more.
    Done(Credits),
    /// The balance could not fund one more copy.
    Short { balance: Credits },
    /// The bank refused it or could not be reached; `sent`: the amount submitted, if it got
    /// that far (its answer may have been lost).
    Failed { sent: Option<Credits>, why: String },
}

/// A top-up to send: `want` (or exactly `want`, a resend) under `nonce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub want: Credits,
    pub nonce: u64,
    /// Send exactly `want`, whatever the balance: it is a resend of a top-up whose answer
    /// was lost.
    pub exact: bool,
}

impl Budget {
    /// An escrow opened with `opened`, for copies of at most `per_copy` each, of a job whose
    /// expected copies cost at most `worst` and which may spend at most `cap`.
    pub fn new(per_copy: Credits, opened: Credits, worst: Credits, cap: Option<Credits>) -> Self {
        Self {
            per_copy,
            deposited: opened,
            worst,
            cap,
            pending: false,
            nonce: 0,
            retry_at: Millis(0),
            resend: None,
            paused: None,
        }
    }

    /// What the escrow has received in all.
    pub fn deposited(&self) -> Credits {
        self.deposited
    }

    /// Why no more copies can be funded, while that is so.
    pub fn paused(&self) -> Option<&str> {
        self.paused.as_deref()
    }

    /// Copies the escrow still covers, beyond `owed` copies started and not yet paid or
    /// dropped, when `paid` has been paid from it.
    pub fn free_copies(&self, paid: Credits, owed: u64) -> u64 {
        if self.per_copy.0 == 0 {
            return u64::MAX;
        }
        (self.deposited.0.saturating_sub(paid.0) / self.per_copy.0).saturating_sub(owed)
    }

    /// The scheduler's start limit: the runs started so far and the copies still covered.
    /// `None` (no limit) when copies cost nothing.
    pub fn start_limit(&self, paid: Credits, owed: u64, started: u64) -> Option<u64> {
        (self.per_copy.0 > 0).then(|| started.saturating_add(self.free_copies(paid, owed)))
    }

    /// The top-up to ask for now, if one is due: when fewer than half a window of copies
    /// is still covered, up to the job's worst case; past it only when `blocked` (tasks
    /// wait and no copy is covered: retries beyond the expected copies). Never past
    /// `max_cost`. Returns the amount wanted and its nonce; the caller funds what the
    /// balance allows, in whole copies, and reports back with [`Budget::settled`].
    pub fn due(&mut self, paid: Credits, owed: u64, blocked: bool, now: Millis) -> Option<Due> {
        if self.per_copy.0 == 0 {
            return None;
        }
        if self.free_copies(paid, owed) > 0 {
            // Payments below the worst case freed room: whatever paused the job is over.
            self.paused = None;
        }
        if self.pending || now < self.retry_at {
            return None;
        }
        if let Some((want, nonce)) = self.resend {
            self.pending = true;
            return Some(Due {
                want,
                nonce,
                exact: true,
            });
        }
        let free = self.free_copies(paid, owed);
        if free >= WINDOW / 2 {
            return None;
        }
        let window = self.per_copy.0.saturating_mul(WINDOW);
        let to_worst = self.worst.0.saturating_sub(self.deposited.0);
        let mut want = if to_worst >= self.per_copy.0 {
            window.min(to_worst)
        } else if free == 0 && blocked {
            window
        } else {
            return None;
        };
        if let Some(cap) = self.cap {
            want = want.min(cap.0.saturating_sub(self.deposited.0));
        }
        if want < self.per_copy.0 {
            if free == 0 && blocked {
                self.paused = Some(format!(
                    "paused: the job's budget.max_cost of {} is in its escrow; raise budget.max_cost to go on",
                    self.cap.unwrap_or_default()
                ));
            }
            return None;
        }
        self.pending = true;
        self.nonce += 1;
        Some(Due {
            want: Credits(want),
            nonce: self.nonce,
            exact: false,
        })
    }

    /// The top-up asked for by [`Budget::due`] came back. Returns a message to show when
    /// the job is newly paused.
    pub fn settled(&mut self, outcome: TopUpOutcome, now: Millis) -> Option<String> {
        self.pending = false;
        match outcome {
            TopUpOutcome::Done(amount) => {
                self.resend = None;
                self.deposited = Credits(self.deposited.0.saturating_add(amount.0));
                self.paused = None;
                None
            }
            TopUpOutcome::Short { balance } => {
                self.resend = None;
                self.retry_at = Millis(now.0.saturating_add(RETRY_MS));
                let why = format!(
                    "paused: balance {balance} credits, next batch needs {}; top up or lower max_price",
                    self.per_copy
                );
                let new = self.paused.as_deref() != Some(why.as_str());
                self.paused = Some(why.clone());
                new.then_some(why)
            }
            TopUpOutcome::Failed { sent, why } => {
                self.retry_at = Millis(now.0.saturating_add(RETRY_MS));
                // A refusal is an answer: the nonce is spent. Anything else may have been
                // applied with its answer lost: the same request goes again.
                let refused = why.contains("balance") || why.contains("closed");
                self.resend = match (sent, refused) {
                    (Some(amount), false) => {
                        Some((amount, self.resend.map_or(self.nonce, |r| r.1)))
                    }
                    _ => None,
                };
                // Until it goes through, the job waits for the bank, not for a provider.
                let paused =
                    format!("paused: the escrow could not be topped up ({why}); trying again");
                let new = self.paused.is_none();
                self.paused = Some(paused.clone());
                new.then_some(paused)
            }
        }
    }

    /// The most one copy may cost.
    pub fn per_copy(&self) -> Credits {
        self.per_copy
    }
}

/// What to deposit, for copies of at most `per_copy` each, for a wanted top-up from a wallet
/// holding `balance`: whole copies, at most `want`; `None` when not even one copy is covered.
pub fn fundable(per_copy: Credits, want: Credits, balance: Credits) -> Option<Credits> {
    if per_copy.0 == 0 {
        return None;
    }
    let copies = want.0.min(balance.0) / per_copy.0;
    (copies > 0).then(|| Credits(copies * per_copy.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY: Credits = Credits(10);

    #[test]
    fn the_start_limit_covers_what_is_deposited_less_paid_and_owed() {
        let b = Budget::new(COPY, Credits(100), Credits(1_000), None);
        // 10 copies deposited, 3 owed, 0 paid: 7 more may start.
        assert_eq!(b.start_limit(Credits::ZERO, 3, 5), Some(12));
        // Paid 25 (three copies at less than their worst case): 75 left, 3 owed, 4 more.
        assert_eq!(b.start_limit(Credits(25), 3, 8), Some(12));
        // Owing more than is left: nothing more starts.
        assert_eq!(b.free_copies(Credits(90), 3), 0);
        // Free copies: no limit.
        assert_eq!(
            Budget::new(Credits::ZERO, Credits::ZERO, Credits::ZERO, None).start_limit(
                Credits::ZERO,
                9,
                9
            ),
            None
        );
    }

    #[test]
    fn a_top_up_is_due_below_half_a_window_once_at_a_time() {
        let worst = Credits(COPY.0 * WINDOW * 10);
        let mut b = Budget::new(COPY, Credits(COPY.0 * WINDOW), worst, None);
        assert_eq!(b.due(Credits::ZERO, WINDOW / 2, false, Millis(0)), None);
        let (want, nonce) = b
            .due(Credits::ZERO, WINDOW / 2 + 1, false, Millis(0))
            .map(|d| (d.want, d.nonce))
            .expect("due");
        assert_eq!((want, nonce), (Credits(COPY.0 * WINDOW), 1));
        assert_eq!(
            b.due(Credits::ZERO, WINDOW, false, Millis(0)),
            None,
            "one at a time"
        );
        assert_eq!(b.settled(TopUpOutcome::Done(Credits(30)), Millis(1)), None);
        assert_eq!(b.deposited(), Credits(COPY.0 * WINDOW + 30));
        assert_eq!(
            b.due(Credits::ZERO, WINDOW, false, Millis(2))
                .map(|d| d.nonce),
            Some(2)
        );
    }

    #[test]
    fn deposits_stop_at_the_worst_case_unless_retries_are_blocked() {
        // A 3-copy job opened with all 3 copies: nothing more while they run.
        let mut b = Budget::new(COPY, Credits(30), Credits(30), None);
        assert_eq!(b.due(Credits::ZERO, 3, false, Millis(0)), None);
        // A retry waits and no copy is covered: a top-up, beyond the worst case.
        let want = b.due(Credits::ZERO, 3, true, Millis(0)).expect("due").want;
        assert_eq!(want, Credits(COPY.0 * WINDOW));
        // Part of the way to the worst case: only that part.
        let mut b = Budget::new(COPY, Credits(30), Credits(55), None);
        assert_eq!(
            b.due(Credits::ZERO, 3, false, Millis(0)).map(|d| d.want),
            Some(Credits(25))
        );
    }

    #[test]
    fn a_short_balance_pauses_says_so_once_and_retries_later() {
        let mut b = Budget::new(COPY, COPY, Credits(1_000), None);
        assert!(b.due(Credits::ZERO, 1, true, Millis(0)).is_some());
        assert_eq!(fundable(COPY, Credits(100), Credits(3)), None);
        assert_eq!(fundable(COPY, Credits(100), Credits(37)), Some(Credits(30)));
        assert_eq!(fundable(COPY, Credits(20), Credits(37)), Some(Credits(20)));
        let why = b
            .settled(
                TopUpOutcome::Short {
                    balance: Credits(3),
                },
                Millis(0),
            )
            .expect("paused");
        assert!(why.starts_with("paused: balance"), "{why}");
        assert!(why.ends_with("top up or lower max_price"), "{why}");
        assert_eq!(b.paused(), Some(why.as_str()));
        assert_eq!(b.due(Credits::ZERO, 1, true, Millis(100)), None, "not yet");
        assert!(b.due(Credits::ZERO, 1, true, Millis(RETRY_MS)).is_some());
        let again = b.settled(
            TopUpOutcome::Short {
                balance: Credits(3),
            },
            Millis(RETRY_MS),
        );
        assert_eq!(again, None, "said once");
        assert!(
            b.due(Credits::ZERO, 1, true, Millis(2 * RETRY_MS))
                .is_some()
        );
        b.settled(TopUpOutcome::Done(Credits(20)), Millis(2 * RETRY_MS));
        assert_eq!(b.paused(), None);
    }

    #[test]
    fn max_cost_caps_what_is_deposited() {
        let mut b = Budget::new(COPY, Credits(20), Credits(1_000), Some(Credits(45)));
        let want = b.due(Credits::ZERO, 2, false, Millis(0)).expect("due").want;
        assert_eq!(want, Credits(25));
        b.settled(TopUpOutcome::Done(Credits(20)), Millis(0));
        // 40 of 45 deposited, and all of it owed: the cap, not the balance, stops it.
        assert_eq!(b.due(Credits::ZERO, 4, true, Millis(1)), None);
        assert!(b.paused().expect("paused").contains("budget.max_cost"));
    }

    #[test]
    fn a_top_up_whose_answer_was_lost_is_sent_again_exactly() {
        let mut b = Budget::new(COPY, COPY, Credits(1_000_000), None);
        let first = b.due(Credits::ZERO, 1, false, Millis(0)).expect("due");
        b.settled(
            TopUpOutcome::Failed {
                sent: Some(Credits(40)),
                why: "bank unreachable".into(),
            },
            Millis(0),
        );
        let again = b
            .due(Credits::ZERO, 1, false, Millis(RETRY_MS))
            .expect("due");
        assert_eq!(
            again,
            Due {
                want: Credits(40),
                nonce: first.nonce,
                exact: true
            }
        );
        // A refusal spends the nonce: the next top-up is a new one.
        b.settled(
            TopUpOutcome::Failed {
                sent: Some(Credits(40)),
                why: "escrow of job 1 is closed".into(),
            },
            Millis(RETRY_MS),
        );
        let next = b
            .due(Credits::ZERO, 1, false, Millis(2 * RETRY_MS))
            .expect("due");
        assert!(!next.exact && next.nonce > first.nonce);
    }

    #[test]
    fn a_pause_clears_once_payments_free_room() {
        let mut b = Budget::new(COPY, COPY, Credits(1_000), None);
        assert!(b.due(Credits::ZERO, 1, true, Millis(0)).is_some());
        b.settled(
            TopUpOutcome::Short {
                balance: Credits(3),
            },
            Millis(0),
        );
        assert!(b.paused().is_some());
        // The one copy was paid for less than its worst case... not yet a whole copy free.
        b.due(Credits(4), 0, true, Millis(RETRY_MS));
        b.settled(
            TopUpOutcome::Short {
                balance: Credits(3),
            },
            Millis(RETRY_MS),
        );
        assert!(b.paused().is_some());
        // Deposits grew elsewhere (a resend came through): room again, no longer paused.
        b.settled(TopUpOutcome::Done(Credits(20)), Millis(RETRY_MS));
        b.due(Credits(4), 0, false, Millis(2 * RETRY_MS));
        assert_eq!(b.paused(), None);
    }
}
