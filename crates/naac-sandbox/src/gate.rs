//! Pausing and throttling guests: the [`Gate`] every run of a [`Sandbox`](crate::Sandbox)
//! passes at each epoch tick.
//!
//! A guest is only ever stopped where wasmtime lets the host in: at an epoch tick (every
//! [`EPOCH_TICK`](crate::EPOCH_TICK)) while it runs wasm code, and once right before its
//! `_start`. There the run's thread blocks on a condition variable — no CPU is used — until
//! the gate lets it go on. Guests are deterministic and their clocks are virtual, so blocking
//! them never changes what they compute; the time they spend blocked is added to their
//! wall-clock deadline and reported as [`RunResult::paused`](crate::RunResult::paused).
//!
//! The gate also tells the epoch ticker when no guest needs ticks (none is running, or all
//! are blocked), so an idle sandbox costs no CPU.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Length of one duty cycle: at duty `d` a guest runs about `d × DUTY_PERIOD` at a time, then
/// sleeps about `(1 − d) × DUTY_PERIOD`. (Measured at epoch ticks, so a guest always runs at
/// least one tick before it sleeps; the ratio holds regardless.)
pub const DUTY_PERIOD: Duration = Duration::from_millis(100);

/// The smallest duty [`Gate::set_duty`] accepts; smaller values are raised to it.
pub const MIN_DUTY: f64 = 0.01;

/// How often a blocked guest looks at its run's cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Pauses and throttles the guests of one [`Sandbox`](crate::Sandbox); get it with
/// [`Sandbox::gate`](crate::Sandbox::gate). Cheap to clone: all clones control the same
/// guests.
///
/// - [`pause`](Self::pause) stops every running guest at its next epoch tick (within
///   [`EPOCH_TICK`](crate::EPOCH_TICK)), and a guest that is about to start before it runs
///   any of its code; [`resume`](Self::resume) lets them go on exactly where they were.
///   A paused guest's thread sleeps; it still notices its run being cancelled within 50 ms.
/// - [`set_duty`](Self::set_duty) caps the share of wall time each guest runs (like BOINC's
///   "use at most N% of CPU time"): at duty `d` a guest that has run for `d ×`
///   [`DUTY_PERIOD`] sleeps for `(1 − d) / d` times as long as it ran. At duty 1 (the
///   default) the check costs one atomic load per tick.
///
/// Time a run spends blocked by either does not count against its wall-clock limit.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    /// Whether a guest may have to block (paused, or duty below 1): the only thing the fast
    /// path reads. Written under `lock`, like `paused` and `duty`.
    slow: AtomicBool,
    paused: AtomicBool,
    /// The duty's `f64` bits.
    duty: AtomicU64,
    /// Guards changes of the above so a blocked guest cannot miss a wake-up.
    lock: Mutex<()>,
    changed: Condvar,
    /// Guests inside a run.
    running: AtomicUsize,
    /// Guests blocked by [`Gate::pause`].
    paused_guests: AtomicUsize,
    /// Guests inside a run and not blocked: the epoch ticker sleeps while this is 0.
    active: AtomicUsize,
    /// The epoch ticker, unparked when `active` leaves 0.
    ticker: OnceLock<Thread>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("paused", &self.is_paused())
            .field("duty", &self.duty())
            .field("running", &self.running())
            .field("paused_guests", &self.paused_guests())
            .finish()
    }
}

impl Gate {
    /// An open gate: not paused, duty 1.
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                slow: AtomicBool::new(false),
                paused: AtomicBool::new(false),
                duty: AtomicU64::new(1f64.to_bits()),
                lock: Mutex::new(()),
                changed: Condvar::new(),
                running: AtomicUsize::new(0),
                paused_guests: AtomicUsize::new(0),
                active: AtomicUsize::new(0),
                ticker: OnceLock::new(),
            }),
        }
    }

    /// Stops every guest at its next epoch tick (and any guest about to start) until
    /// [`resume`](Self::resume). Returns at once; [`paused_guests`](Self::paused_guests)
    /// shows when the guests have stopped.
    pub fn pause(&self) {
        self.change(|i| i.paused.store(true, Ordering::SeqCst));
    }

    /// Lets paused guests go on; they wake at once.
    pub fn resume(&self) {
        self.change(|i| i.paused.store(false, Ordering::SeqCst));
    }

    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::SeqCst)
    }

    /// Lets each guest run at most `duty` of the (wall) time, from [`MIN_DUTY`] to 1; values
    /// outside are clamped, NaN means 1. Takes effect at each guest's next tick.
    pub fn set_duty(&self, duty: f64) {
        let duty = if duty.is_nan() {
            1.0
        } else {
            duty.clamp(MIN_DUTY, 1.0)
        };
        self.change(|i| i.duty.store(duty.to_bits(), Ordering::SeqCst));
    }

    /// The duty set by [`set_duty`](Self::set_duty); 1 means unthrottled.
    pub fn duty(&self) -> f64 {
        f64::from_bits(self.inner.duty.load(Ordering::SeqCst))
    }

    /// Guests inside [`Sandbox::run`](crate::Sandbox::run) now, blocked or not.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// Guests blocked by [`pause`](Self::pause) now (not those sleeping off their duty).
    pub fn paused_guests(&self) -> usize {
        self.inner.paused_guests.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.inner
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a change of the settings and wakes blocked guests to look at it.
    fn change(&self, f: impl FnOnce(&Inner)) {
        let _g = self.lock();
        let i = &*self.inner;
        f(i);
        let slow = i.paused.load(Ordering::SeqCst) || self.duty() < 1.0;
        i.slow.store(slow, Ordering::SeqCst);
        i.changed.notify_all();
    }

    /// Registers the epoch ticker thread, woken when a guest needs ticks.
    pub(crate) fn set_ticker(&self, t: Thread) {
        // Set once, by `Sandbox::start`, before any run.
        let _ = self.inner.ticker.set(t);
    }

    /// Wakes the epoch ticker (to tick, or to notice it should stop).
    pub(crate) fn wake_ticker(&self) {
        if let Some(t) = self.inner.ticker.get() {
            t.unpark();
        }
    }

    /// Whether some guest needs epoch ticks.
    pub(crate) fn needs_ticks(&self) -> bool {
        self.inner.active.load(Ordering::SeqCst) > 0
    }

    /// Counts a run from now until the guard is dropped.
    pub(crate) fn enter(&self) -> Running {
        self.inner.running.fetch_add(1, Ordering::SeqCst);
        self.activate();
        Running(self.clone())
    }

    fn activate(&self) {
        if self.inner.active.fetch_add(1, Ordering::SeqCst) == 0 {
            self.wake_ticker();
        }
    }

    fn deactivate(&self) {
        self.inner.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// Called by a run at each epoch tick and before `_start`: blocks while the gate is
    /// paused or while the run owes sleep to its duty, until then or until `cancel` is set.
    #[inline]
    pub(crate) fn pass(&self, throttle: &mut Throttle, cancel: &AtomicBool) -> Passed {
        if !self.inner.slow.load(Ordering::Relaxed) {
            throttle.since = None;
            return Passed::default();
        }
        self.pass_slow(throttle, cancel)
    }

    #[cold]
    fn pass_slow(&self, throttle: &mut Throttle, cancel: &AtomicBool) -> Passed {
        let start = Instant::now();
        // Wall time the guest has run since it last slept; capped so that a long stretch
        // without ticks (a slow host call) cannot earn it a very long sleep.
        let ran = start
            .saturating_duration_since(*throttle.since.get_or_insert(start))
            .min(DUTY_PERIOD);
        let owed = |duty: f64| {
            if duty >= 1.0 || ran < DUTY_PERIOD.mul_f64(duty) {
                Duration::ZERO
            } else {
                ran.mul_f64((1.0 - duty) / duty)
            }
        };
        let i = &*self.inner;
        let mut g = self.lock();
        let mut blocked = false;
        let mut counted_paused = false;
        let cancelled = loop {
            if cancel.load(Ordering::Relaxed) {
                break true;
            }
            let paused = i.paused.load(Ordering::SeqCst);
            let wait = if paused {
                CANCEL_POLL
            } else {
                // Time blocked so far, paused or not, pays off what the duty asks.
                let left = owed(self.duty()).saturating_sub(start.elapsed());
                if left.is_zero() {
                    break false;
                }
                left.min(CANCEL_POLL)
            };
            if !blocked {
                blocked = true;
                self.deactivate();
            }
            if paused != counted_paused {
                if paused {
                    i.paused_guests.fetch_add(1, Ordering::SeqCst);
                } else {
                    i.paused_guests.fetch_sub(1, Ordering::SeqCst);
                }
                counted_paused = paused;
            }
            g = i
                .changed
                .wait_timeout(g, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        if counted_paused {
            i.paused_guests.fetch_sub(1, Ordering::SeqCst);
        }
        drop(g);
        if !blocked {
            return Passed {
                blocked: Duration::ZERO,
                cancelled,
            };
        }
        self.activate();
        let now = Instant::now();
        throttle.since = Some(now);
        Passed {
            blocked: now.saturating_duration_since(start),
            cancelled,
        }
    }
}

/// One run's duty-cycle state.
#[derive(Default)]
pub(crate) struct Throttle {
    /// When the guest last started running while throttled; `None` while unthrottled.
    since: Option<Instant>,
}

/// What [`Gate::pass`] did.
#[derive(Debug, Default)]
pub(crate) struct Passed {
    /// How long the run was blocked.
    pub blocked: Duration,
    /// The run was cancelled (while blocked or before).
    pub cancelled: bool,
}

/// A run counted by [`Gate::running`]; uncounts it when dropped.
pub(crate) struct Running(Gate);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.deactivate();
        self.0.inner.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duty_is_clamped() {
        let g = Gate::new();
        assert_eq!(g.duty(), 1.0);
        g.set_duty(0.0);
        assert_eq!(g.duty(), MIN_DUTY);
        g.set_duty(7.0);
        assert_eq!(g.duty(), 1.0);
        g.set_duty(f64::NAN);
        assert_eq!(g.duty(), 1.0);
        g.set_duty(0.25);
        assert_eq!(g.duty(), 0.25);
    }

    #[test]
    fn an_open_gate_never_blocks() {
        let g = Gate::new();
        let cancel = AtomicBool::new(false);
        let mut t = Throttle::default();
        let p = g.pass(&mut t, &cancel);
        assert!(p.blocked.is_zero() && !p.cancelled);
        assert!(t.since.is_none());
    }

    #[test]
    fn running_and_active_are_counted() {
        let g = Gate::new();
        assert!(!g.needs_ticks());
        let a = g.enter();
        let b = g.enter();
        assert_eq!(g.running(), 2);
        assert!(g.needs_ticks());
        drop(a);
        assert!(g.needs_ticks());
        drop(b);
        assert_eq!(g.running(), 0);
        assert!(!g.needs_ticks());
    }

    #[test]
    fn pause_blocks_until_resume() {
        let g = Gate::new();
        g.pause();
        let run = g.enter();
        let g2 = g.clone();
        let h = std::thread::spawn(move || {
            let cancel = AtomicBool::new(false);
            g2.pass(&mut Throttle::default(), &cancel)
        });
        while g.paused_guests() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!g.needs_ticks(), "a paused guest needs no ticks");
        std::thread::sleep(Duration::from_millis(100));
        g.resume();
        let p = h.join().expect("thread");
        assert!(!p.cancelled);
        assert!(p.blocked >= Duration::from_millis(100), "{:?}", p.blocked);
        assert_eq!(g.paused_guests(), 0);
        assert!(g.needs_ticks());
        drop(run);
    }

    #[test]
    fn a_paused_guest_notices_cancellation() {
        let g = Gate::new();
        g.pause();
        let cancel = Arc::new(AtomicBool::new(false));
        let (g2, c2) = (g.clone(), cancel.clone());
        let h = std::thread::spawn(move || g2.pass(&mut Throttle::default(), &c2));
        while g.paused_guests() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        cancel.store(true, Ordering::SeqCst);
        let p = h.join().expect("thread");
        assert!(p.cancelled);
        assert_eq!(g.paused_guests(), 0);
    }

    #[test]
    fn duty_owes_sleep_in_proportion() {
        let g = Gate::new();
        g.set_duty(0.5);
        let cancel = AtomicBool::new(false);
        let mut t = Throttle::default();
        // The first pass starts the window; running less than duty × period owes nothing.
        assert!(g.pass(&mut t, &cancel).blocked.is_zero());
        std::thread::sleep(Duration::from_millis(60));
        let p = g.pass(&mut t, &cancel);
        assert!(p.blocked >= Duration::from_millis(55), "{:?}", p.blocked);
        // Back to full speed: nothing owed, and the window is forgotten.
        g.set_duty(1.0);
        std::thread::sleep(Duration::from_millis(60));
        assert!(g.pass(&mut t, &cancel).blocked.is_zero());
        assert!(t.since.is_none());
    }
}
