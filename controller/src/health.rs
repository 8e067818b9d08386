//! `/healthz` and `/readyz` over plain HTTP, for the kubelet's probes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::metrics::Metrics;
use crate::{Error, Result};

/// Whether the controller is ready: its Website cache has synced, and none of its watches is failing.
///
/// A watch that fails (the API server is unreachable, or the controller's RBAC was revoked) makes the controller
/// not ready until that watch delivers an event again, or a probe finds the kind readable again (a resumed watch
/// delivers nothing until something changes); kube-runtime keeps retrying the watch with backoff.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<State>);

#[derive(Debug, Default)]
struct State {
    synced: AtomicBool,
    /// How many watches are failing; the fast path of every event reads only this.
    failing: AtomicUsize,
    /// The failing watches and their last error.
    errors: Mutex<BTreeMap<&'static str, String>>,
}

impl Readiness {
    /// Marks the Website cache synced.
    pub fn set_ready(&self) {
        self.0.synced.store(true, Ordering::Release);
    }

    /// Records that the watch of `kind` failed with `error`.
    pub fn watch_failed(&self, kind: &'static str, error: String) {
        let mut errors = self.errors();
        if errors.insert(kind, error).is_none() {
            self.0.failing.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Records that the watch of `kind` delivered an event.
    pub fn watch_ok(&self, kind: &'static str) {
        if self.0.failing.load(Ordering::Acquire) == 0 {
            return;
        }
        if self.errors().remove(kind).is_some() {
            self.0.failing.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The kinds whose watch is failing now.
    pub fn failing_watches(&self) -> Vec<&'static str> {
        if self.0.failing.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        self.errors().keys().copied().collect()
    }

    /// Whether the controller is ready.
    pub fn is_ready(&self) -> bool {
        self.0.synced.load(Ordering::Acquire) && self.0.failing.load(Ordering::Acquire) == 0
    }

    /// Why the controller is not ready, if it is not.
    pub fn not_ready_reason(&self) -> Option<String> {
        if !self.0.synced.load(Ordering::Acquire) {
            return Some("caches not synced yet".into());
        }
        let errors = self.errors();
        (!errors.is_empty()).then(|| {
            let failing: Vec<String> = errors.iter().map(|(kind, e)| format!("watch of {kind} failing: {e}")).collect();
            failing.join("; ")
        })
    }

    fn errors(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        self.0.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn respond(path: &str, readiness: &Readiness, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match path {
        "/healthz" => (StatusCode::OK, "ok".to_owned(), TEXT),
        "/readyz" => match readiness.not_ready_reason() {
            None => (StatusCode::OK, "ok".to_owned(), TEXT),
            Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason, TEXT),
        },
        "/metrics" => (StatusCode::OK, metrics.encode(), OPENMETRICS),
        _ => (StatusCode::NOT_FOUND, "not found; try /healthz, /readyz or /metrics".to_owned(), TEXT),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}

const TEXT: &str = "text/plain; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds the health listener.
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })
}

/// Serves health and metrics requests on `listener` forever.
pub async fn serve(listener: TcpListener, readiness: Readiness, metrics: Arc<Metrics>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "health listener ready");
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (readiness, metrics) = (readiness.clone(), metrics.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = respond(req.uri().path(), &readiness, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                debug!(%error, "health connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_readiness_and_healthz_is_always_ok() {
        let (readiness, metrics) = (Readiness::default(), Metrics::new());
        assert_eq!(respond("/healthz", &readiness, &metrics).status(), StatusCode::OK);
        assert_eq!(respond("/readyz", &readiness, &metrics).status(), StatusCode::SERVICE_UNAVAILABLE);
        readiness.set_ready();
        assert_eq!(respond("/readyz", &readiness, &metrics).status(), StatusCode::OK);
        assert_eq!(respond("/nothing", &readiness, &metrics).status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_failing_watch_makes_the_controller_unready_until_it_delivers_again() {
        let (readiness, metrics) = (Readiness::default(), Metrics::new());
        readiness.set_ready();
        readiness.watch_failed("Deployment", "deployments.apps is forbidden".into());
        readiness.watch_failed("Deployment", "deployments.apps is forbidden".into());
        readiness.watch_failed("Service", "connection refused".into());
        assert!(!readiness.is_ready());
        assert_eq!(
            readiness.not_ready_reason().as_deref(),
            Some(
                "watch of Deployment failing: deployments.apps is forbidden; watch of Service failing: connection refused"
            )
        );
        assert_eq!(respond("/readyz", &readiness, &metrics).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(readiness.failing_watches(), ["Deployment", "Service"]);
        readiness.watch_ok("Deployment");
        readiness.watch_ok("ConfigMap");
        assert!(!readiness.is_ready(), "the Service watch still fails");
        readiness.watch_ok("Service");
        assert!(readiness.is_ready());
        assert_eq!(respond("/healthz", &readiness, &metrics).status(), StatusCode::OK, "alive throughout");
    }
}
