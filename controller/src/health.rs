//! `/healthz` and `/readyz` over plain HTTP, for the kubelet's probes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::{Error, Result};

/// Whether the controller has synced its caches and is reconciling.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the controller ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the controller is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

fn respond(path: &str, readiness: &Readiness) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "ok"),
        "/readyz" if readiness.is_ready() => (StatusCode::OK, "ok"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet"),
        _ => (StatusCode::NOT_FOUND, "not found; try /healthz or /readyz"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// Binds the health listener.
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })
}

/// Serves health requests on `listener` forever.
pub async fn serve(listener: TcpListener, readiness: Readiness) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "health listener ready");
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = respond(req.uri().path(), &readiness);
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
        let readiness = Readiness::default();
        assert_eq!(respond("/healthz", &readiness).status(), StatusCode::OK);
        assert_eq!(respond("/readyz", &readiness).status(), StatusCode::SERVICE_UNAVAILABLE);
        readiness.set_ready();
        assert_eq!(respond("/readyz", &readiness).status(), StatusCode::OK);
        assert_eq!(respond("/metrics", &readiness).status(), StatusCode::NOT_FOUND);
    }
}
