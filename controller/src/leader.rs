//! Leader election between controller replicas, over a `coordination.k8s.io/v1` Lease.
//!
//! The Lease is held through kube-lease-manager, which locks it with server-side apply (two replicas applying
//! `holderIdentity` at once conflict, and only one wins), renews it before it expires, and releases it when asked.
//! A replica that does not hold the Lease sleeps until the holder's lease would expire: a crashed leader is replaced
//! after at most `--leader-election-lease-seconds`. A leader that stops gracefully releases the Lease, and the
//! standby, which watches the Lease, takes over at once instead of sleeping out the old term.

use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::settings::LeaderElection;
use crate::{Error, Result};

/// Where and as whom this replica competes for the Lease.
#[derive(Clone)]
pub struct Candidate {
    client: Client,
    settings: LeaderElection,
    namespace: String,
    identity: String,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("lease", &self.settings.lease)
            .field("namespace", &self.namespace)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Candidate {
    /// A candidate for the Lease of `settings`, in its namespace (else `POD_NAMESPACE`, else the client's default
    /// namespace).
    ///
    /// # Errors
    /// When the renewal grace is not shorter than the lease.
    pub fn new(client: Client, settings: &LeaderElection) -> Result<Self> {
        if settings.renew_grace_seconds >= settings.lease_seconds {
            return Err(Error::LeaderElection(format!(
                "--leader-election-renew-grace-seconds ({}) must be less than --leader-election-lease-seconds ({})",
                settings.renew_grace_seconds, settings.lease_seconds
            )));
        }
        let namespace = settings
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| client.default_namespace().to_owned());
        Ok(Self { identity: settings.identity(), client, settings: settings.clone(), namespace })
    }

    /// This replica's identity in the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this replica holds the Lease.
    ///
    /// # Errors
    /// When the Lease cannot be read or created.
    pub async fn lead(&self) -> Result<Leadership> {
        info!(lease = %self.settings.lease, namespace = %self.namespace, identity = %self.identity, "waiting to hold the Lease");
        loop {
            let mut leadership = self.compete().await?;
            tokio::select! {
                acquired = leadership.acquired() => {
                    acquired?;
                    return Ok(leadership);
                }
                () = self.released() => {
                    // The holder let go before its term ended: compete again now rather than at the end of the term.
                    debug!("the Lease was released");
                    leadership.release().await;
                }
            }
        }
    }

    async fn compete(&self) -> Result<Leadership> {
        let manager = LeaseManagerBuilder::new(self.client.clone(), &self.settings.lease)
            .with_namespace(&self.namespace)
            .with_identity(&self.identity)
            .with_duration(self.settings.lease_seconds)
            .with_grace(self.settings.renew_grace_seconds)
            .build()
            .await
            .map_err(|e| {
                Error::LeaderElection(format!("failed to use Lease {}/{}: {e}", self.namespace, self.settings.lease))
            })?;
        let (state, task) = manager.watch().await;
        Ok(Leadership { state, task })
    }

    /// Resolves when the Lease, once seen held, has no holder: its holder released it. A free Lease seen first is
    /// the manager's to take.
    async fn released(&self) {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.settings.lease));
        let mut leases = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
        let mut held = false;
        while let Some(event) = leases.next().await {
            match event {
                Ok(lease) => {
                    let holder = lease.spec.and_then(|spec| spec.holder_identity).filter(|h| !h.is_empty());
                    if holder.is_none() && held {
                        return;
                    }
                    held = holder.is_some();
                }
                Err(error) => warn!(%error, "watch of the Lease failed; retrying with backoff"),
            }
        }
        // The watch never ends by itself; should it, rely on the term's end.
        std::future::pending::<()>().await;
    }
}

/// This replica's standing in the election, kept up to date in the background.
#[derive(Debug)]
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Leadership {
    /// Whether this replica holds the Lease now.
    pub fn leading(&self) -> bool {
        *self.state.borrow()
    }

    /// Waits until this replica holds the Lease.
    ///
    /// # Errors
    /// When the election stopped.
    pub async fn acquired(&mut self) -> Result<()> {
        self.state
            .wait_for(|leading| *leading)
            .await
            .map(|_| ())
            .map_err(|_| Error::LeaderElection("the election stopped".into()))
    }

    /// Resolves when this replica no longer holds the Lease (it could not renew it in time).
    pub async fn lost(&mut self) {
        let _ = self.state.wait_for(|leading| !*leading).await;
    }

    /// Stops competing and releases the Lease if this replica holds it, so that a standby takes over at once.
    pub async fn release(self) {
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => debug!("left the election"),
            Ok(Err(error)) => warn!(%error, "failed to release the Lease; the standby takes over when it expires"),
            Err(error) => warn!(%error, "the election task failed"),
        }
    }
}
