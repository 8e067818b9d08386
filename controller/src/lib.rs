//! The Website controller: turns each `Website` into a Deployment and a Service, and reports status.
//!
//! Where to start: [`reconcile::reconcile`] is the whole control loop for one Website; it calls the pure
//! builders in [`resources`] and [`status`]. [`reconcile::run`] wires it to watches of Websites and of the
//! Deployments and Services they own. [`settings`] lists every flag.

pub mod children;
pub mod events;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod resources;
pub mod settings;
pub mod status;

/// Everything that can make a reconcile or the controller fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Website lacks a field the API server always sets.
    #[error("failed to reconcile: the Website has no {0}")]
    MissingObjectKey(&'static str),
    /// A child could not be read.
    #[error("failed to read the {kind}: {source}")]
    Read {
        /// What was read.
        kind: &'static str,
        /// The API server's answer.
        #[source]
        source: kube::Error,
    },
    /// A child could not be encoded as JSON.
    #[error("failed to encode the {kind}: {reason}")]
    Encode {
        /// What was encoded.
        kind: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A child went away between two reads; the next reconcile creates it again.
    #[error("the {kind} {name:?} was deleted while it was being checked")]
    Gone {
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// Creating or server-side applying a child, or applying the status, was refused.
    #[error("failed to apply the {kind}: {source}")]
    Apply {
        /// What was applied.
        kind: &'static str,
        /// The API server's answer.
        #[source]
        source: kube::Error,
    },
    /// A child this reconcile created before it met a conflict could not be deleted again; the next reconcile
    /// retries.
    #[error("failed to delete the {kind} {name:?} created before a conflict was found: {source}")]
    Undo {
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API server's answer.
        #[source]
        source: kube::Error,
    },
    /// Websites cannot be listed at start, usually because the CRD is not installed.
    #[error(
        "failed to list Websites ({0}); is the CRD installed (kubectl apply -f crds/website-crd.yaml) and may this \
         service account list websites.extensions.example.com?"
    )]
    CrdNotReady(#[source] kube::Error),
    /// Leader election could not start, or this replica lost the Lease while it led.
    #[error("leader election: {0}")]
    LeaderElection(String),
    /// A kube client could not be built from the environment.
    #[error("failed to configure the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The health listener could not bind.
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Result of controller operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
