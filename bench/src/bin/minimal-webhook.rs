//! `minimal-webhook`: the baseline of the webhook's speed figures. A correct admission webhook on the same stack
//! as `website-webhook` (actix-web with rustls 0.23 on the ring provider, TLS 1.3 and 1.2, HTTP/1.1) that does
//! the least any webhook must do: it parses the AdmissionReview just enough to read `request.uid` and answers
//! `allowed: true` for it, on `/validate` and `/mutate` alike, without a patch.
//!
//! `/static` answers a fixed allowed review after receiving the body but without parsing it: the cost of the
//! HTTP and TLS stack alone.
//!
//! It takes the flags of `website-webhook` that matter for a benchmark (`--tls-cert-file`, `--tls-key-file`,
//! `--listen-addr`, `--workers`; `--health-addr` is accepted and ignored) so that both start the same way.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context as _, Result};
use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, version};
use serde::{Deserialize, Serialize};

/// Largest accepted body: the webhook's default.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024 + 64 * 1024;

#[derive(Parser, Debug)]
#[command(name = "minimal-webhook", about = "The least an admission webhook can do: echo the uid, allow")]
struct Args {
    /// Address of the HTTPS listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen_addr: SocketAddr,
    /// PEM file with the serving certificate chain, leaf first.
    #[arg(long)]
    tls_cert_file: PathBuf,
    /// PEM file with the serving certificate's private key.
    #[arg(long)]
    tls_key_file: PathBuf,
    /// HTTP worker threads (default: one per CPU).
    #[arg(long)]
    workers: Option<usize>,
    /// Accepted for compatibility with `website-webhook`; there is no health listener.
    #[arg(long, default_value = "off")]
    health_addr: String,
}

/// The only part of an AdmissionReview read: `request.uid`. Unknown fields are skipped, not stored.
#[derive(Deserialize)]
struct Review<'a> {
    #[serde(borrow)]
    request: Request<'a>,
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Response<'a>,
}

#[derive(Serialize)]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
}

async fn admit(body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Review<'_>>(&body) {
        Ok(review) => HttpResponse::Ok().json(Answer {
            api_version: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: Response { uid: &review.request.uid, allowed: true },
        }),
        Err(error) => HttpResponse::BadRequest().body(format!("not an AdmissionReview: {error}")),
    }
}

async fn fixed(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#)
}

fn tls_config(args: &Args) -> Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(&args.tls_cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("failed to read {}", args.tls_cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(&args.tls_key_file)
        .with_context(|| format!("failed to read {}", args.tls_key_file.display()))?;
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key do not match")
}

#[actix_web::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let tls = tls_config(&args)?;
    let mut server = HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .route("/validate", web::post().to(admit))
            .route("/mutate", web::post().to(admit))
            .route("/static", web::post().to(fixed))
    });
    if let Some(workers) = args.workers {
        server = server.workers(workers);
    }
    server
        .listen_rustls_0_23(std::net::TcpListener::bind(args.listen_addr)?, tls)
        .with_context(|| format!("failed to listen on {}", args.listen_addr))?
        .run()
        .await?;
    Ok(())
}
