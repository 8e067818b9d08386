//! `website-webhook`: serves the Website admission webhook over TLS until SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use website_webhook::access::AccessReviewer;
use website_webhook::metrics::Metrics;
use website_webhook::self_managed::{self, CertificateKeeper};
use website_webhook::server::Application;
use website_webhook::settings::{LogFormat, Settings};

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let settings = Settings::parse();
    init_tracing(settings.log_format);
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        tracing::debug!("a rustls crypto provider was already installed");
    }
    let result = run(&settings).await;
    match result {
        Ok(()) => {
            tracing::info!("webhook stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "webhook failed");
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(settings: &Settings) -> website_webhook::Result<()> {
    // Shared with the certificate keeper, which counts the certificates it makes, from the first.
    let metrics = Arc::new(Metrics::new());
    // In every mode: Websites with credentials are admitted only once the API server says that their author may read
    // the Secret. The configuration is checked to be there now, and read when the first such Website arrives.
    website_webhook::access::api_server_configured().map_err(|e| {
        website_webhook::Error::ApiServerConfig(format!(
            "failed to find the API server's address and credentials (in-cluster service account or kubeconfig), \
             needed to check access to the Secrets that Websites refer to: {e}"
        ))
    })?;
    let access_timeout = Duration::from_secs(settings.access_review_timeout_seconds);
    // With self-managed certificates, the files the server loads are written first.
    let (keeper, access) = if settings.self_managed.enabled {
        let config = kube::Config::infer().await.map_err(|e| {
            website_webhook::Error::ApiServerConfig(format!("failed to read the API server's configuration: {e}"))
        })?;
        let access = AccessReviewer::new(config.clone(), access_timeout);
        let client = kube::Client::try_from(config)
            .map_err(|source| self_managed::Error::Kube { action: "connect to the API server".into(), source })?;
        let mut keeper = CertificateKeeper::new(client, &settings.self_managed, settings.certificate_files())?
            .with_metrics(metrics.clone());
        keeper.prepare().await;
        (Some(keeper), access)
    } else {
        (None, AccessReviewer::inferred(access_timeout))
    };
    let app = Application::build_with(settings, metrics, access)?;
    // The keeper says when the API server trusts the certificate being served, and when it stops trusting it.
    let keeping = keeper.map(|keeper| tokio::spawn(keeper.run(app.readiness())));
    let result = app.run_until_stopped().await;
    if let Some(task) = keeping {
        task.abort();
    }
    result
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
