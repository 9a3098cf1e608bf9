//! A run: the pool, the job stream and each job's real scheduler (`naac-sched`), driven
//! event by event. Hosts come and go, run what they are assigned a slot at a time and
//! return right or wrong answers; requesters greet hosts, renew their leases while they
//! report, lose them when they leave or go silent, and find more.

use crate::engine::{Queue, Time};
use crate::model::{self, Host};
use crate::report::{Report, SettingFigures, Violation};
use crate::rng::Rng;
use crate::scenario::{self, Scenario, Strategy};
use naac_sched::{Command, Config, Millis, ProviderInfo, Scheduler, TaskId};
use std::collections::{HashSet, VecDeque};

mod lookups;

use lookups::DhtState;

/// How often a requester hears from its providers and ticks its scheduler.
const TICK_MS: u64 = 2_000;
/// How long after a host went silent its requesters give up its connection (libp2p's ping
/// timeout): its runs are lost then, if its lease did not lapse first.
const SILENT_MS: u64 = 20_000;
/// Events kept for a replay's printout.
const RECENT: usize = 64;
/// How long before the start the hosts' sessions begin.
const WARM_MS: Time = 24 * 3_600_000;
/// How often a watched run reports.
pub const WATCH_EVERY: u64 = 1 << 18;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RunRef {
    job: u32,
    task: u32,
    attempt: u32,
}

#[derive(Debug)]
enum Ev {
    Up(u32),
    /// Up at the start, for the rest of a session begun before it.
    Resume {
        host: u32,
        stay: Time,
    },
    Down {
        host: u32,
        session: u32,
    },
    Arrive,
    Done {
        host: u32,
        session: u32,
        run: RunRef,
        lie: bool,
    },
    Tick(u32),
    /// Key `.0`'s provider (re)publishes its record, if it is still in session `.1` (else
    /// its next session's own schedule is the one that counts).
    PublishIf(u32, u32),
    Lookup,
}

/// What a host holds: runs waiting for a slot and runs going.
#[derive(Default)]
struct Work {
    queue: VecDeque<RunRef>,
    running: Vec<RunRef>,
}

/// A task's end as the simulator saw it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    Right,
    Wrong,
    Failed,
}

struct Job {
    setting: u8,
    sched: Scheduler<u32>,
    region: u8,
    mean_ms: f64,
    seed: u64,
    providers: Vec<u32>,
    known: HashSet<u32>,
    ends: Vec<End>,
}

/// The simulation of one scenario under one seed.
pub struct Sim {
    s: Scenario,
    seed: u64,
    churn: Rng,
    arrivals: Rng,
    work_rng: Rng,
    q: Queue<Ev>,
    now: Time,
    end: Time,
    hosts: Vec<Host>,
    /// When each host last came or went (seconds).
    changed_s: Vec<u32>,
    online: Vec<u32>,
    pos: Vec<u32>,
    host_jobs: Vec<Vec<u32>>,
    work: Vec<Work>,
    jobs: Vec<Option<Job>>,
    settings: Vec<SettingFigures>,
    dht: Option<DhtState>,
    event: u64,
    trace: blake3::Hasher,
    violations: Vec<Violation>,
    recent: VecDeque<String>,
    keep_recent: bool,
    // Figures.
    departures: u64,
    decisions: u64,
    runs: u64,
    lost: u64,
    jobs_done: u64,
}

const NONE: u32 = u32::MAX;

impl Sim {
    /// A run of `s` under `seed`, its pool drawn and the first hosts up.
    pub fn new(s: Scenario, seed: u64) -> Sim {
        let root = Rng::new(seed);
        let mut pool = root.fork(1);
        let n = s.pool.hosts as usize;
        let hosts: Vec<Host> = (0..n).map(|_| Host::draw(&s, &mut pool)).collect();
        let end = (s.hours * 3_600_000.0) as Time;
        let settings = s
            .jobs
            .verify
            .iter()
            .map(|v| SettingFigures::new(v))
            .collect();
        let mut sim = Sim {
            churn: root.fork(2),
            arrivals: root.fork(3),
            work_rng: root.fork(4),
            q: Queue::default(),
            now: 0,
            end,
            changed_s: vec![0; n],
            online: Vec::with_capacity(n),
            pos: vec![NONE; n],
            host_jobs: (0..n).map(|_| Vec::new()).collect(),
            work: (0..n).map(|_| Work::default()).collect(),
            hosts,
            jobs: Vec::new(),
            settings,
            dht: None,
            seed,
            event: 0,
            trace: blake3::Hasher::new(),
            violations: Vec::new(),
            recent: VecDeque::new(),
            keep_recent: false,
            departures: 0,
            decisions: 0,
            runs: 0,
            lost: 0,
            jobs_done: 0,
            s,
        };
        // The steady state: a host is up with the share of time its sessions take.
        // Each host's sessions and absences run from a day before the start, so the run
        // begins in the steady state (with heavy tails, a fresh start would have every
        // host begin a new session at once and leave far sooner than in the long run).
        let p = sim.s.pool.clone();
        let (on, off) = (
            p.session_median_min * 60_000.0,
            p.offline_median_min * 60_000.0,
        );
        let mut start = root.fork(5);
        for h in 0..n as u32 {
            let mut up = start.chance(on / (on + off));
            let mut t = -(WARM_MS as f64);
            loop {
                let d = start.weibull_median(p.session_shape, if up { on } else { off });
                if t + d > 0.0 {
                    let left = (t + d).max(1.0) as Time;
                    match up {
                        true => sim.q.push(
                            0,
                            Ev::Resume {
                                host: h,
                                stay: left,
                            },
                        ),
                        false => sim.q.push(left, Ev::Up(h)),
                    }
                    break;
                }
                t += d;
                up = !up;
            }
        }
        if sim.s.jobs.per_hour > 0.0 {
            sim.q.push(1_000, Ev::Arrive);
        }
        sim.start_dht(&root);
        sim
    }

    /// Runs to the scenario's end, or to event `stop_at` (keeping the events before it for
    /// the printout).
    pub fn run(self, stop_at: Option<u64>) -> Report {
        self.run_watched(stop_at, &mut |_, _| {})
    }

    /// As [`Sim::run`], telling `watch` the simulated time and the events so far every
    /// [`WATCH_EVERY`] events.
    pub fn run_watched(mut self, stop_at: Option<u64>, watch: &mut dyn FnMut(Time, u64)) -> Report {
        self.keep_recent = stop_at.is_some();
        while let Some((at, ev)) = self.q.pop() {
            if at > self.end {
                break;
            }
            self.now = at;
            self.event += 1;
            self.note(&ev);
            self.step(ev);
            if self.event.is_multiple_of(WATCH_EVERY) {
                watch(self.now, self.event);
            }
            if stop_at.is_some_and(|s| self.event >= s) {
                break;
            }
        }
        self.report()
    }

    /// The simulated time at which the run ends.
    pub fn end(&self) -> Time {
        self.end
    }

    fn note(&mut self, ev: &Ev) {
        let (kind, a, b, c) = match ev {
            Ev::Up(h) => (1u8, *h, 0, 0),
            Ev::Resume { host, stay } => (9, *host, *stay as u32, (*stay >> 32) as u32),
            Ev::Down { host, session } => (2, *host, *session, 0),
            Ev::Arrive => (3, 0, 0, 0),
            Ev::Done { host, run, lie, .. } => {
                (4, *host, run.job, run.task ^ u32::from(*lie) << 31)
            }
            Ev::Tick(j) => (5, *j, 0, 0),
            Ev::PublishIf(k, session) => (7, *k, *session, 0),
            Ev::Lookup => (8, 0, 0, 0),
        };
        self.trace.update(&self.now.to_le_bytes());
        self.trace.update(&[kind]);
        self.trace.update(&a.to_le_bytes());
        self.trace.update(&b.to_le_bytes());
        self.trace.update(&c.to_le_bytes());
        if self.keep_recent {
            if self.recent.len() >= RECENT {
                self.recent.pop_front();
            }
            self.recent
                .push_back(format!("#{} at {} ms: {ev:?}", self.event, self.now));
        }
    }

    fn violate(&mut self, what: String) {
        self.violations.push(Violation {
            event: self.event,
            at_ms: self.now,
            what,
        });
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Up(h) => self.up(h, None),
            Ev::Resume { host, stay } => self.up(host, Some(stay)),
            Ev::Down { host, session } => self.down(host, session),
            Ev::Arrive => self.arrive(),
            Ev::Done {
                host,
                session,
                run,
                lie,
            } => self.done(host, session, run, lie),
            Ev::Tick(j) => self.tick(j),
            Ev::PublishIf(k, session) => {
                let p = self.dht.as_ref().map(|d| d.provider[k as usize]);
                if p.is_some_and(|p| self.hosts[p as usize].session == session) {
                    self.publish(k);
                }
            }
            Ev::Lookup => self.lookup(),
        }
    }

    fn up(&mut self, h: u32, stay: Option<Time>) {
        let host = &mut self.hosts[h as usize];
        if host.up {
            return;
        }
        host.up = true;
        host.session += 1;
        let session = host.session;
        self.changed_s[h as usize] = (self.now / 1000) as u32;
        self.pos[h as usize] = self.online.len() as u32;
        self.online.push(h);
        let p = &self.s.pool;
        let stay = stay.map_or_else(
            || {
                self.churn
                    .weibull_median(p.session_shape, p.session_median_min * 60_000.0)
            },
            |s| s as f64,
        );
        self.q.push(
            self.now + stay.max(1.0) as Time,
            Ev::Down { host: h, session },
        );
        if let Some(keys) = self.dht.as_ref().and_then(|d| d.provides.get(&h)) {
            // A node provides its keys as it starts.
            for k in keys.clone() {
                self.q.push(self.now + 1_000, Ev::PublishIf(k, session));
            }
        }
    }

    fn down(&mut self, h: u32, session: u32) {
        let host = &mut self.hosts[h as usize];
        if !host.up || host.session != session {
            return;
        }
        host.up = false;
        host.running = 0;
        self.departures += 1;
        self.changed_s[h as usize] = (self.now / 1000) as u32;
        let at = self.pos[h as usize] as usize;
        let last = self.online.pop().expect("an up host is online");
        if last != h {
            self.online[at] = last;
            self.pos[last as usize] = at as u32;
        }
        self.pos[h as usize] = NONE;
        self.work[h as usize] = Work::default();
        let (graceful, shape, off) = (
            self.s.pool.graceful,
            self.s.pool.session_shape,
            self.s.pool.offline_median_min,
        );
        if self.churn.chance(graceful) {
            // Its connections close: every requester hears at once.
            let jobs = std::mem::take(&mut self.host_jobs[h as usize]);
            for j in jobs {
                self.lose(j, h);
            }
        }
        let away = self.churn.weibull_median(shape, off * 60_000.0);
        self.q.push(self.now + away.max(1.0) as Time, Ev::Up(h));
    }

    /// Job `j`'s requester loses host `h` (it left, or went silent too long).
    fn lose(&mut self, j: u32, h: u32) {
        let now = Millis(self.now);
        let Some(job) = self.jobs.get_mut(j as usize).and_then(Option::as_mut) else {
            return;
        };
        if !job.known.remove(&h) {
            return;
        }
        job.providers.retain(|p| *p != h);
        job.sched.provider_lost(&h, now);
        self.drain(j);
    }

    fn arrive(&mut self) {
        let j = self.jobs.len() as u32;
        let js = &self.s.jobs;
        let r = &mut self.arrivals;
        let setting = r.below(js.verify.len() as u64) as u8;
        let total = r
            .log_uniform(f64::from(js.tasks[0]), f64::from(js.tasks[1]))
            .round() as u32;
        let mean_ms = r.log_uniform(js.task_seconds[0], js.task_seconds[1]) * 1000.0;
        let region = r.below(u64::from(self.s.pool.regions)) as u8;
        let seed = r.next_u64();
        let policy = scenario::policy(&js.verify[usize::from(setting)]).unwrap_or_default();
        let config = Config {
            seed,
            verify: policy,
            ..Config::default()
        };
        let total = total.max(1);
        self.jobs.push(Some(Job {
            setting,
            sched: Scheduler::new(total, config),
            region,
            mean_ms,
            seed,
            providers: Vec::new(),
            known: HashSet::new(),
            ends: vec![End::Open; total as usize],
        }));
        self.settings[usize::from(setting)].jobs += 1;
        self.discover(j);
        self.q.push(self.now + TICK_MS, Ev::Tick(j));
        let next = self.arrivals.exp(3_600_000.0 / self.s.jobs.per_hour);
        self.q.push(self.now + next.max(1.0) as Time, Ev::Arrive);
    }

    /// Job `j`'s requester greets online hosts it does not know, up to its target.
    fn discover(&mut self, j: u32) {
        let now = Millis(self.now);
        let want = self.s.jobs.hosts_per_job as usize;
        let Some(job) = self.jobs.get_mut(j as usize).and_then(Option::as_mut) else {
            return;
        };
        let mut tries = want * 4;
        while job.providers.len() < want && tries > 0 && !self.online.is_empty() {
            tries -= 1;
            let h = self.online[self.arrivals.below(self.online.len() as u64) as usize];
            if !job.known.insert(h) {
                continue;
            }
            job.providers.push(h);
            self.host_jobs[h as usize].push(j);
            let host = &self.hosts[h as usize];
            let info = ProviderInfo {
                slots: u32::from(host.slots),
                groups: vec![format!("host:{h}")],
                ..ProviderInfo::default()
            };
            job.sched.provider_joined(h, info, now);
        }
        self.drain(j);
    }

    fn tick(&mut self, j: u32) {
        let now = Millis(self.now);
        let silent_after = (self.now.saturating_sub(SILENT_MS) / 1000) as u32;
        let Some(job) = self.jobs.get_mut(j as usize).and_then(Option::as_mut) else {
            return;
        };
        let mut gone = Vec::new();
        for &h in &job.providers {
            let host = &self.hosts[h as usize];
            if host.up {
                // Its report came: the lease holds.
                job.sched.renew(&h, now);
            } else if self.changed_s[h as usize] <= silent_after {
                gone.push(h);
            }
        }
        job.sched.tick(now);
        self.drain(j);
        for h in gone {
            self.host_jobs[h as usize].retain(|x| *x != j);
            self.lose(j, h);
        }
        let Some(job) = self.jobs.get(j as usize).and_then(Option::as_ref) else {
            return;
        };
        if job.providers.len() * 2 < self.s.jobs.hosts_per_job as usize {
            self.discover(j);
        }
        if self.jobs.get(j as usize).is_some_and(Option::is_some) {
            self.q.push(self.now + TICK_MS, Ev::Tick(j));
        }
    }

    fn done(&mut self, h: u32, session: u32, run: RunRef, lie: bool) {
        let host = &self.hosts[h as usize];
        if !host.up || host.session != session {
            return;
        }
        let w = &mut self.work[h as usize];
        let Some(i) = w.running.iter().position(|r| *r == run) else {
            // Cancelled meanwhile: its slot was freed then.
            return;
        };
        w.running.swap_remove(i);
        self.hosts[h as usize].running -= 1;
        self.start(h);
        let digest = if lie {
            match self.s.adversary.strategy {
                Strategy::Collude => model::wrong(run.job, run.task, 1),
                Strategy::Alone => model::wrong(run.job, run.task, 2 + u64::from(h)),
            }
        } else {
            model::right(run.job, run.task)
        };
        let now = Millis(self.now);
        let Some(job) = self.jobs.get_mut(run.job as usize).and_then(Option::as_mut) else {
            return;
        };
        job.sched
            .task_result(&h, TaskId(run.task), run.attempt, digest, now);
        self.drain(run.job);
    }

    /// Starts what host `h` has room for.
    fn start(&mut self, h: u32) {
        loop {
            let host = &self.hosts[h as usize];
            if !host.up || host.running >= u16::from(host.slots) {
                return;
            }
            let Some(run) = self.work[h as usize].queue.pop_front() else {
                return;
            };
            let Some(job) = self.jobs.get(run.job as usize).and_then(Option::as_ref) else {
                continue;
            };
            // The task's own time, the same on every host and every run of the seed.
            let mut t = Rng::new(job.seed ^ u64::from(run.task).wrapping_mul(0x9e37_79b9));
            let work_ms = job.mean_ms * t.lognormal(1.0, 0.3);
            let host = &self.hosts[h as usize];
            let mut ms =
                work_ms / f64::from(host.speed) + model::rtt(job.region, host.region) as f64;
            let a = &self.s.adversary;
            let lie = host.cheater && self.work_rng.chance(a.lie);
            if lie {
                ms *= a.haste.max(0.001);
            }
            let session = host.session;
            self.hosts[h as usize].running += 1;
            self.work[h as usize].running.push(run);
            self.runs += 1;
            self.q.push(
                self.now + ms.max(1.0) as Time,
                Ev::Done {
                    host: h,
                    session,
                    run,
                    lie,
                },
            );
        }
    }

    /// Performs what job `j`'s scheduler asks.
    fn drain(&mut self, j: u32) {
        loop {
            let Some(job) = self.jobs.get_mut(j as usize).and_then(Option::as_mut) else {
                return;
            };
            let Some(cmd) = job.sched.poll_command() else {
                return;
            };
            self.decisions += 1;
            match cmd {
                Command::Assign { provider, tasks } => {
                    self.trace.update(&[10]);
                    self.trace.update(&provider.to_le_bytes());
                    self.trace.update(&(tasks.len() as u32).to_le_bytes());
                    if !self.hosts[provider as usize].up {
                        continue;
                    }
                    let w = &mut self.work[provider as usize];
                    for (t, attempt) in tasks {
                        w.queue.push_back(RunRef {
                            job: j,
                            task: t.0,
                            attempt,
                        });
                    }
                    self.start(provider);
                }
                Command::Cancel { provider, tasks } => {
                    self.trace.update(&[11]);
                    self.trace.update(&provider.to_le_bytes());
                    let w = &mut self.work[provider as usize];
                    let dropped = |r: &RunRef| {
                        r.job == j && tasks.iter().any(|(t, a)| t.0 == r.task && *a == r.attempt)
                    };
                    w.queue.retain(|r| !dropped(r));
                    let before = w.running.len();
                    w.running.retain(|r| !dropped(r));
                    let freed = (before - w.running.len()) as u16;
                    let host = &mut self.hosts[provider as usize];
                    host.running = host.running.saturating_sub(freed);
                    self.start(provider);
                }
                Command::Verdict { task, accepted, .. } => {
                    self.trace.update(&[12]);
                    self.trace.update(&task.0.to_le_bytes());
                    let Some(d) = accepted else { continue };
                    let end = if d == model::right(j, task.0) {
                        End::Right
                    } else {
                        End::Wrong
                    };
                    let setting = usize::from(job.setting);
                    if job.ends[task.0 as usize] == End::Failed {
                        self.violate(format!(
                            "job {j} task {}: accepted after it failed for good",
                            task.0
                        ));
                    }
                    let name = &self.s.jobs.verify[setting];
                    if end == End::Wrong && self.s.expect.no_wrong.contains(name) {
                        let what =
                            format!("job {j} task {}: {name} accepted a wrong result", task.0);
                        self.violate(what);
                    }
                    if let Some(job) = self.jobs.get_mut(j as usize).and_then(Option::as_mut) {
                        job.ends[task.0 as usize] = end;
                    }
                }
                Command::TaskFailed { task, .. } => {
                    self.trace.update(&[13]);
                    self.trace.update(&task.0.to_le_bytes());
                    if job.ends[task.0 as usize] == End::Failed {
                        self.violate(format!("job {j} task {}: failed twice", task.0));
                    }
                    if let Some(job) = self.jobs.get_mut(j as usize).and_then(Option::as_mut) {
                        job.ends[task.0 as usize] = End::Failed;
                    }
                }
                Command::Lost { tasks, .. } => self.lost += tasks.len() as u64,
                Command::Reopened { .. } | Command::Reset { .. } | Command::Recompute { .. } => {}
                Command::JobFinished => {
                    self.trace.update(&[14]);
                    self.finish(j);
                    return;
                }
            }
        }
    }

    /// Job `j` says it is finished: every task must have ended, once.
    fn finish(&mut self, j: u32) {
        let Some(job) = self.jobs.get_mut(j as usize).and_then(Option::take) else {
            return;
        };
        let p = job.sched.progress();
        let open = job.ends.iter().filter(|e| **e == End::Open).count();
        let (right, wrong, failed) = job.ends.iter().fold((0u64, 0u64, 0u64), |c, e| match e {
            End::Right => (c.0 + 1, c.1, c.2),
            End::Wrong => (c.0, c.1 + 1, c.2),
            End::Failed => (c.0, c.1, c.2 + 1),
            End::Open => c,
        });
        if open > 0 {
            self.violate(format!(
                "job {j} finished with {open} of its {} tasks neither accepted nor failed",
                job.ends.len()
            ));
        }
        if u64::from(p.succeeded) != right + wrong || u64::from(p.failed) != failed {
            self.violate(format!(
                "job {j}: the scheduler counts {} accepted and {} failed, its verdicts {} and {failed}",
                p.succeeded,
                p.failed,
                right + wrong
            ));
        }
        let f = &mut self.settings[usize::from(job.setting)];
        f.finished += 1;
        f.accepted += right + wrong;
        f.wrong += wrong;
        f.failed += failed;
        f.runs += p.started;
        self.jobs_done += 1;
        for h in job.providers {
            self.host_jobs[h as usize].retain(|x| *x != j);
        }
    }

    fn report(mut self) -> Report {
        let unfinished = self.jobs.iter().filter(|j| j.is_some()).count() as u64;
        let share = self.s.adversary.cheaters;
        for f in &self.settings {
            let Some(bound) = self.s.expect.wrong_below.get(&f.name) else {
                continue;
            };
            if f.accepted >= 200 && f.wrong_rate() >= *bound {
                let what = format!(
                    "{} accepted wrong results at {:.4}, not below {bound}",
                    f.name,
                    f.wrong_rate()
                );
                self.violations.push(Violation {
                    event: self.event,
                    at_ms: self.now,
                    what,
                });
            }
        }
        let dht = self.dht_figures();
        let hours = self.now as f64 / 3_600_000.0;
        Report {
            scenario: self.s.name.clone(),
            seed: self.seed,
            hosts: self.s.pool.hosts,
            sim_hours: hours,
            events: self.event,
            trace: self.trace.finalize().to_hex().to_string(),
            jobs_arrived: self.jobs.len() as u64,
            jobs_finished: self.jobs_done,
            jobs_unfinished: unfinished,
            runs: self.runs,
            runs_lost: self.lost,
            decisions: self.decisions,
            departures: self.departures,
            online_end: self.online.len() as u64,
            cheater_share: share,
            settings: self.settings,
            dht,
            violations: self.violations,
            recent: self.recent.into_iter().collect(),
        }
    }
}
