//! HTTP routes and the server that runs them.
//!
//! Admission routes answer every AdmissionReview with HTTP 200 and an AdmissionReview, allowed or not.
//! Only requests that are not AdmissionReviews at all get an HTTP error: 400 for a body that is not JSON,
//! not an `admission.k8s.io/v1` AdmissionReview or without a `request`; 413 for a body over the size limit;
//! 408 for a body not received within the deadline; 429 when the webhook holds as many bytes as it may (see
//! [`crate::capacity`]); 405 for a method other than POST.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError, web};
use base64::Engine as _;
use serde_json::Value;
use tracing::{info, warn};

use crate::access::AccessReviewer;
use crate::admission::{self, Judgement, Request, Verdict};
use crate::capacity::{self, Capacity, Limits};
use crate::log::Untrusted;
use crate::metrics::{self, Endpoint, Metrics};
use crate::readiness::Readiness;
pub use crate::review::{REVIEW_API_VERSION, REVIEW_KIND, ReviewError, parse_review};
use crate::settings::Settings;
use crate::tls::{self, ReloadingCertResolver};
use crate::{Error, Result};

impl ResponseError for ReviewError {
    fn status_code(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

async fn answer(
    state: &State,
    request: HttpRequest,
    payload: web::Payload,
    endpoint: Endpoint,
    judge: fn(&Request<'_>) -> Judgement,
) -> HttpResponse {
    let started = Instant::now();
    let route = endpoint.path();
    let capacity = &state.capacity;
    let (body, _reservation) = match capacity::read_body(capacity, request.headers(), payload).await {
        Ok(read) => read,
        Err(error) => {
            state.metrics.refused(&error);
            // Under attack this happens thousands of times a second: log it at most once a second.
            if capacity.should_log_refusal() {
                warn!(%error, route, refused_so_far = capacity.refused(), "not reading a request body");
            }
            return error.error_response();
        }
    };
    let (response, operation, verdict) = match parse_review(&body) {
        Ok(request) => {
            let verdict = match judge(&request) {
                Judgement::Final(verdict) => verdict,
                Judgement::IfPermitted { verdict, access } => {
                    let (verdict, outcome) = state.access.conclude(verdict, &access).await;
                    state.metrics.access_reviewed(outcome);
                    verdict
                }
            };
            let outcome = match (verdict.allowed, &verdict.patch) {
                (false, _) => metrics::Verdict::denied,
                (true, Some(_)) => metrics::Verdict::patched,
                (true, None) => metrics::Verdict::allowed,
            };
            let response = HttpResponse::Ok()
                .content_type(actix_web::http::header::ContentType::json())
                .body(encode_review_bytes(&request.uid, &verdict));
            (response, metrics::Operation::from(&request.operation), outcome)
        }
        Err(error) => {
            warn!(error = %Untrusted(&error.to_string()), route, "rejecting a request that is not an AdmissionReview");
            (error.error_response(), metrics::Operation::none, metrics::Verdict::malformed)
        }
    };
    state.metrics.answered(endpoint, operation, verdict, started.elapsed().as_secs_f64());
    response
}

/// The answer to the request of `uid`, wrapped in an AdmissionReview, as the API server reads it: `response.patch`
/// is the base64 of the JSON Patch, as the admission API defines it, and `patchType` is `JSONPatch` when there is a
/// patch. Borrowed from the verdict: encoding copies nothing but the patch's base64.
#[derive(serde::Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    status: &'a kube::core::response::Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

impl<'a> ReviewOut<'a> {
    fn of(uid: &'a str, verdict: &'a Verdict) -> Self {
        let patch = verdict.patch.as_deref().map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes));
        Self {
            api_version: REVIEW_API_VERSION,
            kind: REVIEW_KIND,
            response: ResponseOut {
                uid,
                allowed: verdict.allowed,
                status: &verdict.result,
                patch_type: patch.is_some().then_some("JSONPatch"),
                patch,
                warnings: &verdict.warnings,
            },
        }
    }
}

/// The answer to the request of `uid`, wrapped in an AdmissionReview, in JSON form (see [`encode_review_bytes`]
/// for the bytes).
pub fn encode_review(uid: &str, verdict: &Verdict) -> Value {
    serde_json::to_value(ReviewOut::of(uid, verdict)).unwrap_or_else(|e| encoding_failed(&e))
}

/// The answer to the request of `uid`, wrapped in an AdmissionReview and encoded as the body of the HTTP answer:
/// `response.patch` base64-encoded as the admission API defines it.
pub fn encode_review_bytes(uid: &str, verdict: &Verdict) -> Vec<u8> {
    serde_json::to_vec(&ReviewOut::of(uid, verdict))
        .unwrap_or_else(|e| serde_json::to_vec(&encoding_failed(&e)).unwrap_or_default())
}

/// Serializing plain strings, numbers and maps cannot fail; answer something well-formed regardless.
fn encoding_failed(error: &serde_json::Error) -> Value {
    serde_json::json!({"apiVersion": REVIEW_API_VERSION, "kind": REVIEW_KIND,
        "response": {"uid": "", "allowed": false, "status": {"code": 500, "message": format!("failed to encode the response: {error}")}}})
}

async fn validate(state: web::Data<State>, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    answer(&state, request, payload, Endpoint::validate, admission::validate).await
}

async fn mutate(state: web::Data<State>, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    answer(&state, request, payload, Endpoint::mutate, |request| admission::mutate(request).into()).await
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    let chain = state.certificate.as_ref().map(|resolver| resolver.current_chain()).unwrap_or_default();
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode(&chain))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn readyz(readiness: Option<web::Data<Readiness>>) -> HttpResponse {
    match readiness {
        Some(r) if !r.is_ready() => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("not ready: the API server does not trust the serving certificate yet"),
        _ => HttpResponse::Ok().content_type("text/plain").body("ok"),
    }
}

/// Routes served over HTTPS: admission and health.
pub fn admission_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/validate").route(web::post().to(validate)))
        .service(web::resource("/mutate").route(web::post().to(mutate)));
    health_routes(cfg);
}

/// Health routes, served on both listeners.
pub fn health_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)));
}

/// `/metrics`, served on the plain-HTTP health listener only: what reaches the admission port (the API server)
/// has no use for it.
pub fn metrics_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(metrics)));
}

/// What every worker of both listeners shares.
#[derive(Debug)]
pub struct State {
    /// The budget of bytes in flight.
    pub capacity: Arc<Capacity>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The served certificate, for its expiry; `None` in tests without TLS.
    pub certificate: Option<Arc<ReloadingCertResolver>>,
    /// Asks the API server whether a user may read the Secret a Website refers to.
    pub access: Arc<AccessReviewer>,
}

/// Application state shared by every worker: the budget of bytes in flight, and the metrics; no API server to check
/// Secret access with.
pub fn app_data(limits: Limits) -> web::Data<State> {
    web::Data::new(State {
        capacity: Arc::new(Capacity::new(limits)),
        metrics: Arc::new(Metrics::new()),
        certificate: None,
        access: Arc::new(AccessReviewer::unavailable()),
    })
}

/// The running webhook: its listeners, bound, and the certificate reloader.
pub struct Application {
    admission: Server,
    health: Option<Server>,
    port: u16,
    health_port: Option<u16>,
    resolver: Arc<ReloadingCertResolver>,
    reload_interval: Duration,
    readiness: Readiness,
}

fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })
}

impl Application {
    /// Loads the certificate and binds the listeners; serving starts with [`Application::run_until_stopped`].
    /// Port 0 picks a free port; [`Application::port`] tells which. Without an API server, every Website with
    /// credentials is refused (see [`Application::build_with`]).
    ///
    /// # Errors
    /// When the certificate files do not load or a listener cannot bind.
    pub fn build(settings: &Settings) -> Result<Self> {
        Self::build_with(settings, Arc::new(Metrics::new()), AccessReviewer::unavailable())
    }

    /// [`Application::build`], counting in `metrics`, which others (the certificate keeper) count in too, and
    /// checking Secret access with `access`.
    ///
    /// # Errors
    /// When the certificate files do not load or a listener cannot bind.
    pub fn build_with(settings: &Settings, metrics: Arc<Metrics>, access: AccessReviewer) -> Result<Self> {
        let resolver = Arc::new(ReloadingCertResolver::load(settings.certificate_files())?);
        let tls_config = tls::server_config(resolver.clone())?;
        let listener = bind(settings.listen_addr)?;
        let port = listener.local_addr().map_err(Error::Serve)?.port();
        let state = web::Data::new(State {
            capacity: Arc::new(Capacity::new(settings.limits())),
            metrics,
            certificate: Some(resolver.clone()),
            access: Arc::new(access),
        });
        let health_state = state.clone();
        let readiness = if settings.self_managed.enabled { Readiness::awaiting_trust() } else { Readiness::trusted() };
        let ready = web::Data::new(readiness.clone());
        let shutdown = settings.shutdown_timeout_seconds;
        let admission_ready = ready.clone();
        let mut server = HttpServer::new(move || {
            App::new().app_data(state.clone()).app_data(admission_ready.clone()).configure(admission_routes)
        })
        .shutdown_timeout(shutdown)
        // A client gets as long for its headers as for its body; then the connection is closed.
        .client_request_timeout(settings.limits().body_timeout)
        .max_connections(settings.max_connections_per_worker());
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let admission = server.listen_rustls_0_23(listener, tls_config).map_err(Error::Serve)?.run();

        let (health, health_port) = match settings.health_addr {
            Some(addr) => {
                let listener = bind(addr)?;
                let health_port = listener.local_addr().map_err(Error::Serve)?.port();
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(ready.clone())
                        .app_data(health_state.clone())
                        .configure(health_routes)
                        .configure(metrics_routes)
                })
                .workers(1)
                .shutdown_timeout(shutdown)
                .listen(listener)
                .map_err(Error::Serve)?
                .run();
                (Some(server), Some(health_port))
            }
            None => (None, None),
        };
        info!(https_port = port, health_port, cert = %settings.tls_cert_file.display(), "webhook listening");
        Ok(Self {
            admission,
            health,
            port,
            health_port,
            resolver,
            reload_interval: Duration::from_secs(settings.tls_reload_interval_seconds),
            readiness,
        })
    }

    /// Port of the HTTPS listener.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Port of the plain-HTTP health listener, if enabled.
    pub fn health_port(&self) -> Option<u16> {
        self.health_port
    }

    /// A handle that stops the admission listener (and with it [`Application::run_until_stopped`]).
    pub fn handle(&self) -> ServerHandle {
        self.admission.handle()
    }

    /// The webhook's readiness: with self-managed certificates, the keeper says when the API server trusts the
    /// served certificate.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// The certificate resolver, to observe reloads.
    pub fn cert_resolver(&self) -> Arc<ReloadingCertResolver> {
        self.resolver.clone()
    }

    /// Serves until SIGTERM or SIGINT (each listener drains in-flight requests first) or until stopped
    /// through [`Application::handle`].
    ///
    /// # Errors
    /// When a listener fails.
    pub async fn run_until_stopped(self) -> Result<()> {
        let watcher = tokio::spawn(self.resolver.clone().watch(self.reload_interval));
        // A `Server` does nothing until polled, so the health listener runs on a task of its own.
        let health = self.health.map(|server| (server.handle(), actix_web::rt::spawn(server)));
        let admission = self.admission.await;
        // The health listener goes when the admission listener does, so probes see the webhook go away.
        if let Some((handle, task)) = health {
            handle.stop(true).await;
            task.await.map_err(|e| Error::Serve(std::io::Error::other(e)))?.map_err(Error::Serve)?;
        }
        watcher.abort();
        admission.map_err(Error::Serve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::admission::AdmissionResponse;

    /// What kube-core's own serialization of the same answer gives, with the patch turned into the base64 the API
    /// defines (kube-core writes the bytes as an array of numbers).
    fn kube_encoding(uid: &str, verdict: &Verdict) -> Value {
        let mut response = AdmissionResponse::invalid("");
        response.uid = uid.to_owned();
        response.allowed = verdict.allowed;
        response.result = verdict.result.clone();
        response.warnings = (!verdict.warnings.is_empty()).then(|| verdict.warnings.clone());
        if let Some(patch) = &verdict.patch {
            response = response.with_patch(serde_json::from_slice(patch).expect("a JSON patch")).expect("encodes");
        }
        let patch = response.patch.as_deref().map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes));
        let mut review = serde_json::to_value(response.into_review()).expect("serializes");
        review["apiVersion"] = REVIEW_API_VERSION.into();
        if let (Some(patch), Some(slot)) = (patch, review.pointer_mut("/response/patch")) {
            *slot = Value::String(patch);
        }
        review
    }

    fn verdicts() -> Vec<Verdict> {
        let allowed = Verdict::allow();
        let warned = Verdict { warnings: vec!["spec.gitRepo: http is unencrypted".into()], ..Verdict::allow() };
        let patched = Verdict {
            patch: Some(br#"[{"op":"add","path":"/spec/replicas","value":1}]"#.to_vec()),
            ..Verdict::allow()
        };
        let denied = Verdict::deny(422, "Invalid", "spec.gitRepo: must name a host".into());
        vec![allowed, warned, patched, denied]
    }

    #[test]
    fn the_answer_is_encoded_as_kube_encodes_it_with_a_base64_patch() {
        for verdict in verdicts() {
            let ours: Value = serde_json::from_slice(&encode_review_bytes("u-1", &verdict)).expect("JSON");
            assert_eq!(ours, kube_encoding("u-1", &verdict), "{verdict:?}");
            assert_eq!(encode_review("u-1", &verdict), ours);
            assert_eq!(ours["response"]["uid"], "u-1");
        }
        let patched = &verdicts()[2];
        let ours: Value = serde_json::from_slice(&encode_review_bytes("u-1", patched)).expect("JSON");
        assert_eq!(ours["response"]["patchType"], "JSONPatch");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(ours["response"]["patch"].as_str().expect("a base64 string"))
            .expect("base64");
        assert_eq!(serde_json::from_slice::<Value>(&decoded).expect("JSON")[0]["path"], "/spec/replicas");
    }
}
