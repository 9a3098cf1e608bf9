//! Sending work: the scheduler's `Assign` command turned into `Assign` requests, one per
//! stage and chunk, each with its terms and the payer's order when the job is paid.

use super::session::{Internal, Session};
use super::stages::{FedSpec, SpecError};
use naac_net::PeerId;
use naac_proto::{Assign, Request, RequestBody, Response, ResponseBody, TaskSpec};
use naac_sched::TaskId;
use naac_types::FailureKind;

impl Session<'_> {
    /// The wire form of run `attempt` of `task`, the stage it belongs to (0 for a job of
    /// one stage) and who holds the outputs of earlier stages it takes.
    fn spec_of(&mut self, task: u32, attempt: u32) -> Result<FedSpec, SpecError> {
        let p = self.prepared;
        if p.stages.is_empty() {
            let s = super::prepare::task_spec(&p.job, p.module_id, task, attempt, &mut self.blobs)?;
            return Ok(FedSpec {
                stage: 0,
                spec: s,
                holders: Vec::new(),
            });
        }
        self.feeds.spec(&p.stages, task, attempt, &mut self.blobs)
    }

    pub(super) fn assign(&mut self, provider: PeerId, tasks: Vec<(TaskId, u32)>) {
        let mut price = None;
        if self.bidding.paid() {
            let sched = &self.sched;
            price = self
                .bidding
                .award(&provider, &tasks, |p| sched.is_available(p))
                .map(|t| t.price);
            if price.is_none() {
                tracing::warn!("no auction price for {provider}: its results go unpaid");
            }
        }
        let now = self.now();
        // Specs by stage: one `Assign` names one module.
        let mut by_stage: Vec<Vec<TaskSpec>> = Vec::new();
        let mut holders: Vec<naac_proto::Holders> = Vec::new();
        for (t, attempt) in tasks {
            match self.spec_of(t.0, attempt) {
                Ok(FedSpec {
                    stage,
                    spec: mut s,
                    holders: h,
                }) => {
                    for h in h {
                        if !holders.iter().any(|x| x.id == h.id) {
                            holders.push(h);
                        }
                    }
                    let argv0 = self.argv0(stage).to_string();
                    self.tally.open(t.0, attempt, || s.input_digest(&argv0));
                    self.assigned_at
                        .entry(t.0)
                        .or_default()
                        .push((attempt, now.0));
                    // A lone replacement run resumes from the lost run's checkpoint; copies
                    // that are compared with each other start fresh, so each stays
                    // independent. Only after a loss: a run that failed on its own (out of
                    // fuel, trap) must not get a fresh budget by resuming.
                    if let Some(ck) = self.checkpoints.latest(t.0)
                        && self.sched.copies(t) == (1, 0)
                        && !self.tally.failed_before(t.0)
                    {
                        s.resume = Some(ck);
                        self.tally.resuming(t.0, attempt);
                        self.checkpoints.resumed();
                    }
                    if by_stage.len() <= stage {
                        by_stage.resize_with(stage + 1, Vec::new);
                    }
                    by_stage[stage].push(s)
                }
                Err(SpecError::Lost(makers)) => {
                    // Lineage: every holder of an output it takes is gone; the tasks that
                    // made them run again, and it waits for them.
                    tracing::info!(
                        "task {} waits: the outputs it takes are held by no provider now; running {} task(s) again",
                        t.0,
                        makers.len()
                    );
                    let mut remade = false;
                    for m in makers {
                        remade |= self.sched.recompute(TaskId(m), now);
                    }
                    if remade {
                        self.sched.unassign(&provider, t, attempt, now);
                    } else {
                        let why = "the outputs it takes are lost and cannot be made again";
                        self.tally.unsendable(t.0, why.into());
                        self.sched
                            .task_failed(&provider, t, attempt, FailureKind::Lost, now);
                    }
                }
                Err(SpecError::Other(e)) => {
                    tracing::error!("failed to prepare task {}: {e:#}", t.0);
                    self.tally.unsendable(t.0, format!("{e:#}"));
                    self.sched
                        .task_failed(&provider, t, attempt, FailureKind::Rejected, now);
                }
            }
        }
        for (stage, specs) in by_stage.iter().enumerate() {
            let hold = self
                .prepared
                .stages
                .get(stage)
                .is_some_and(|st| {
                    super::stages::Feeds::feeds_others(&self.prepared.stages, st.base)
                })
                .then_some(super::stages::HOLD_OVER);
            for chunk in super::assigns::assign_chunks(specs) {
                let ids: std::collections::HashSet<_> = chunk
                    .iter()
                    .flat_map(|t| t.inputs.iter().map(|i| i.1))
                    .collect();
                let held = holders
                    .iter()
                    .filter(|h| ids.contains(&h.id))
                    .map(|h| {
                        let mut h = h.clone();
                        h.addrs = h
                            .peers
                            .iter()
                            .filter_map(|b| PeerId::from_bytes(b).ok())
                            .filter_map(|p| self.addrs.get(&p))
                            .flatten()
                            .cloned()
                            .collect();
                        h
                    })
                    .collect();
                self.send_assign(provider, stage, chunk, price, hold, held);
            }
        }
    }

    /// argv[0] of a stage's tasks (the job's name for a job of one stage).
    fn argv0(&self, stage: usize) -> &str {
        match self.prepared.stages.get(stage) {
            Some(s) => &s.job.name,
            None => &self.prepared.job.name,
        }
    }

    fn send_assign(
        &mut self,
        provider: PeerId,
        stage: usize,
        chunk: &[TaskSpec],
        price: Option<naac_types::Price>,
        hold_over: Option<u64>,
        holders: Vec<naac_proto::Holders>,
    ) {
        let p = self.prepared;
        let (job, module) = match p.stages.get(stage) {
            Some(s) => (&s.job, s.module_id),
            None => (&p.job, p.module_id),
        };
        let runs = chunk.iter().map(|t| (TaskId(t.index), t.attempt)).collect();
        let seq = self.assigns.send(provider, runs);
        // The payer's promise for these runs, which the provider may claim against.
        let (order, commit) = match (price, self.payer.as_mut()) {
            (Some(price), Some(payer)) => {
                let runs: Vec<(u32, u32)> = chunk.iter().map(|t| (t.index, t.attempt)).collect();
                match payer.order(&provider, price, &runs) {
                    Some((order, commit)) => {
                        (Some(order), Some((payer.escrow().bank.clone(), commit)))
                    }
                    None => (None, None),
                }
            }
            _ => (None, None),
        };
        let req = Request::new(RequestBody::Assign(Assign {
            job: p.id,
            seq,
            module,
            argv0: job.name.clone(),
            limits: job.limits,
            checkpoint_interval_ms: job.checkpoint_interval.map(|d| d.as_millis() as u64),
            tasks: chunk.to_vec(),
            order,
            sources: self.blobs.sources_for(chunk, &provider),
            hold_over,
            holders,
            inline: self.blobs.inline_for(chunk),
            reply_with_results: true,
        }));
        let client = self.client.clone();
        let tx = self.internal.clone();
        let runs: Vec<(u32, u32)> = chunk.iter().map(|t| (t.index, t.attempt)).collect();
        tokio::spawn(async move {
            // The order's reservation is at the bank before the provider looks for it.
            if let Some((bank, commit)) = commit
                && let Err(why) = crate::pay::commit(&bank, commit).await
            {
                let why = format!("the bank did not commit the order: {why}");
                let _ = tx.send(Internal::AssignFailed(provider, why, runs)).await;
                return;
            }
            let why = match client.request(provider, req).await {
                Ok(Response {
                    body: ResponseBody::Ack,
                    ..
                }) => return,
                Ok(Response {
                    body: ResponseBody::Report(r),
                    ..
                }) => {
                    let _ = tx.send(Internal::Replied(provider, r)).await;
                    return;
                }
                Ok(other) => format!("{:?}", other.body),
                Err(e) => e.to_string(),
            };
            let _ = tx.send(Internal::AssignFailed(provider, why, runs)).await;
        });
    }
}
