//! The Website admission webhook: a TLS server that validates and defaults `Website` objects.
//!
//! Where to start: [`admission`] holds the rules as plain functions (a [`review::Request`] in, an
//! [`admission::Verdict`] out); [`review`] decodes a request body in one pass; [`server`] wraps them in HTTP routes and builds the [`server::Application`];
//! [`tls`] loads the serving certificate and reloads it when its files change; [`settings`] lists every flag;
//! [`self_managed`] keeps the webhook's own CA and certificate in a Secret and its CA in the webhook configurations.

pub mod access;
pub mod admission;
pub mod capacity;
pub mod log;
pub mod metrics;
pub mod readiness;
pub mod review;
pub mod self_managed;
pub mod server;
pub mod settings;
pub mod tls;

/// Everything that can stop the webhook from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The serving certificate could not be loaded, or TLS configured.
    #[error(transparent)]
    Tls(#[from] tls::ServingError),
    /// A listening socket could not be opened.
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed while running.
    #[error("failed to serve: {0}")]
    Serve(#[source] std::io::Error),
    /// Where the API server is, and how to reach it, is not known.
    #[error("{0}")]
    ApiServerConfig(String),
    /// Self-managed certificates could not be set up.
    #[error(transparent)]
    SelfManaged(#[from] self_managed::Error),
}

/// Result of webhook operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
