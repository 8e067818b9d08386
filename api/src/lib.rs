//! `website-api`: an aggregated API server for Websites.
//!
//! It serves `extensions.example.com/v1alpha1` `websites`, the book's own shape of a Website (`spec.gitRepo` and
//! nothing else), as a view of the `v1` objects that the CRD stores in the main API server. The main API server's
//! aggregation layer proxies every request for that group version here (an `APIService`).
//!
//! - [`authn`]: only the aggregator, proven by its front-proxy client certificate, is believed about the user;
//! - [`authz`]: each request is authorized by the main API server (a SubjectAccessReview), answers cached briefly;
//! - [`handlers`]: discovery, OpenAPI, and the verbs, with the shared validation and defaulting of `website-crd`;
//! - [`upstream`]: reads of `v1` with this server's identity, writes as the requesting user;
//! - [`view`]: `v1alpha1` objects, lists, watch events and tables.

pub mod authn;
pub mod authz;
pub mod handlers;
pub mod openapi;
pub mod settings;
pub mod status;
pub mod upstream;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use tracing::{info, warn};
use website_certs::serving::ReloadingCertResolver;

use crate::authn::{AUTHENTICATION_CONFIG_MAP, FrontProxy, FrontProxyVerifier, Peer, RequestHeaderConfig};
use crate::authz::Authorizer;
use crate::settings::Settings;
use crate::upstream::Upstream;

/// What the handlers share.
pub struct State {
    /// The request-header settings in force.
    pub front_proxy: Arc<FrontProxy>,
    /// The delegated authorizer.
    pub authorizer: Authorizer,
    /// The main API server.
    pub upstream: Upstream,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The serving certificate.
    #[error(transparent)]
    Serving(#[from] website_certs::serving::ServingError),
    /// The request-header settings.
    #[error("failed to read the API server's request-header settings: {0}")]
    Authentication(String),
    /// The listener.
    #[error("failed to listen: {0}")]
    Listen(#[source] std::io::Error),
}

/// Reads the request-header settings the API server publishes.
///
/// # Errors
/// When the ConfigMap cannot be read, or does not hold usable settings.
pub async fn read_request_header_config(client: &Client) -> Result<RequestHeaderConfig, Error> {
    let (namespace, name) = AUTHENTICATION_CONFIG_MAP;
    let config_map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| Error::Authentication(format!("cannot read {namespace}/{name}: {e}")))?;
    RequestHeaderConfig::from_config_map(&config_map).map_err(|e| Error::Authentication(e.to_string()))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

fn health_routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(health))
        .route("/livez", web::get().to(health))
        .route("/readyz", web::get().to(health));
}

/// The running server: its HTTPS listener, and the optional health listener.
pub struct Application {
    server: Server,
    health: Option<Server>,
    port: u16,
}

impl Application {
    /// Binds the listeners with `front_proxy` in force and `client` to the main API server.
    ///
    /// # Errors
    /// When the certificate files do not load or a listener cannot bind.
    pub fn build(settings: &Settings, client: Client, front_proxy: Arc<FrontProxy>) -> Result<Self, Error> {
        let resolver = Arc::new(ReloadingCertResolver::load(settings.certificate_files())?);
        let verifier = Arc::new(FrontProxyVerifier(front_proxy.clone()));
        let tls = website_certs::serving::server_config_with_client_auth(resolver.clone(), verifier)?;
        let state = web::Data::new(State {
            front_proxy,
            authorizer: Authorizer::new(
                client.clone(),
                settings.authorization_cache_ttl(),
                Duration::from_secs(settings.authorization_timeout_seconds),
            ),
            upstream: Upstream::new(client),
        });
        let max_body = settings.max_body_bytes;
        let listener = std::net::TcpListener::bind(settings.listen_addr).map_err(Error::Listen)?;
        let port = listener.local_addr().map_err(Error::Listen)?.port();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .configure(health_routes)
                .configure(handlers::routes)
                .default_service(web::to(handlers::not_found))
        })
        .on_connect(|connection, extensions| {
            use actix_tls::accept::rustls_0_23::TlsStream;
            if let Some(tls) = connection.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>() {
                extensions.insert(Peer::from_chain(tls.get_ref().1.peer_certificates()));
            }
        })
        .shutdown_timeout(10);
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let server = server.listen_rustls_0_23(listener, tls).map_err(Error::Listen)?.run();
        let health = match settings.health_addr {
            Some(addr) => Some(
                HttpServer::new(|| App::new().configure(health_routes))
                    .workers(1)
                    .listen(std::net::TcpListener::bind(addr).map_err(Error::Listen)?)
                    .map_err(Error::Listen)?
                    .run(),
            ),
            None => None,
        };
        let interval = Duration::from_secs(settings.tls_reload_interval_seconds.max(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if let Err(error) = resolver.reload_if_changed() {
                    warn!(%error, "serving certificate not reloaded; still serving the previous one");
                }
            }
        });
        info!(https_port = port, "website-api listening");
        Ok(Self { server, health, port })
    }

    /// The HTTPS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT.
    ///
    /// # Errors
    /// When a listener fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        match self.health {
            Some(health) => futures::try_join!(self.server, health).map(drop),
            None => self.server.await,
        }
    }
}

/// Reads the request-header settings again every `interval`, so a rotated front-proxy CA is used for new
/// connections.
pub async fn refresh_request_header_config(client: Client, front_proxy: Arc<FrontProxy>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match read_request_header_config(&client)
            .await
            .and_then(|c| front_proxy.update(c).map_err(|e| Error::Authentication(e.to_string())))
        {
            Ok(true) => info!("request-header settings changed; new connections use them"),
            Ok(false) => {}
            Err(error) => warn!(%error, "request-header settings not refreshed; the previous ones stay in force"),
        }
    }
}
