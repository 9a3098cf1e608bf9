//! The node's services beside running tasks: bank requests (when this node is the pool's
//! bank), storage requests (when it lends disk with `--store`) and fetches of the outputs it
//! keeps for later stages, each answered from a task of its own so a slow disk or a durable
//! commit never holds the node's loop.

use super::node::Provider;
use crate::store::host::{Room, StoreHost};
use naac_net::{Client, PeerId, Reply};
use naac_proto::{RequestBody, Response, ResponseBody};

impl Provider {
    /// Answers a bank or storage request from a task of its own.
    pub(super) fn serve_service(&mut self, peer: PeerId, body: RequestBody, channel: Reply) {
        let client = self.runner.client.clone();
        match body {
            RequestBody::Bank(req) => {
                // Bank requests wait for a durable commit.
                let bank = self.bank.clone();
                tokio::spawn(async move {
                    let body = match bank {
                        Some(b) => match b.call(req).await {
                            Ok(r) => ResponseBody::Bank(Box::new(r)),
                            Err(e) => ResponseBody::Refused(e),
                        },
                        None => ResponseBody::Refused("this node is not a bank".into()),
                    };
                    client.respond(channel, Response::new(body)).await;
                });
            }
            RequestBody::Store(req) => {
                let store = self.store.clone();
                tokio::spawn(async move {
                    let body = match store {
                        Some(s) => s.handle(&client, peer, req).await,
                        None => ResponseBody::Refused(
                            "this node lends no disk (start it with --store)".into(),
                        ),
                    };
                    client.respond(channel, Response::new(body)).await;
                });
            }
            RequestBody::Fetch { id } => {
                // An output kept here for a later stage, to whoever has its content id.
                let held = self.runner.held.clone();
                tokio::spawn(async move {
                    let bytes = match held {
                        Some(h) => {
                            // A few reads at once: each holds a whole file in memory.
                            let Ok(_permit) = h.serving.clone().acquire_owned().await else {
                                return;
                            };
                            tokio::task::spawn_blocking(move || h.read(&id))
                                .await
                                .ok()
                                .flatten()
                        }
                        None => None,
                    };
                    let body = match bytes {
                        Some(b) => ResponseBody::Blob(b),
                        None => ResponseBody::NotFound,
                    };
                    client.respond(channel, Response::new(body)).await;
                });
            }
            _ => {}
        }
    }

    /// Opens the shard store when the node lends disk, and announces what it holds.
    pub(super) async fn open_store(
        &mut self,
        config: &super::ProviderConfig,
        client: &Client,
    ) -> anyhow::Result<()> {
        if !config.store {
            return Ok(());
        }
        let dir = self.work_dir.with_file_name("store");
        let host = StoreHost::open(
            &dir,
            config.owner.clone(),
            config.store_price,
            self.paid_at.clone(),
            config.store_fault,
        )?;
        host.set_gate(self.runner.gate.clone());
        host.revoke(self.revoked.ids().cloned());
        self.store = Some(host.clone());
        self.update_room();
        tracing::info!(
            "lending disk: shards in {} ({} held)",
            dir.display(),
            naac_types::units::format_size(host.held())
        );
        let client = client.clone();
        tokio::spawn(async move {
            host.announce(&client).await;
            // Shards whose term is over (and a day's grace) are dropped.
            let mut every = tokio::time::interval(crate::store::host::SWEEP_EVERY);
            loop {
                every.tick().await;
                host.sweep(&client).await;
            }
        });
        Ok(())
    }

    /// Tells the store the owner's limits as last measured.
    pub(super) fn update_room(&self) {
        let (Some(store), Some(m)) = (&self.store, &self.monitor) else {
            return;
        };
        let pol = m.policy();
        store.set_room(Room {
            quota: pol.storage_quota,
            other_used: m.storage_used.saturating_sub(store.held()),
            disk_free: m.disk_free,
            min_free_disk: pol.min_free_disk,
            min_price: naac_types::Price::whole(pol.min_store_price),
            serve_when_paused: pol.store_when_paused,
        });
    }
}
