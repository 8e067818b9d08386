//! `website-api`: serves `extensions.example.com/v1alpha1` Websites behind the API server's aggregation layer,
//! until SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use website_api::authn::FrontProxy;
use website_api::settings::{LogFormat, Settings};
use website_api::{Application, Error, read_request_header_config, refresh_request_header_config};

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let settings = Settings::parse();
    init_tracing(settings.log_format);
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        tracing::debug!("a rustls crypto provider was already installed");
    }
    match run(&settings).await {
        Ok(()) => {
            tracing::info!("website-api stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "website-api failed");
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(settings: &Settings) -> Result<(), String> {
    let mut config = kube::Config::infer().await.map_err(|e| {
        format!("failed to find the API server's address and credentials (in-cluster or kubeconfig): {e}")
    })?;
    // Watches are long-lived; the API server ends them (its --min-request-timeout), not a read timeout here.
    config.read_timeout = None;
    let client = kube::Client::try_from(config).map_err(|e| format!("failed to make an API client: {e}"))?;
    let request_header = read_request_header_config(&client).await.map_err(|e| e.to_string())?;
    let front_proxy =
        Arc::new(FrontProxy::new(request_header).map_err(|e| Error::Authentication(e.to_string()).to_string())?);
    let app = Application::build(settings, client.clone(), front_proxy.clone()).map_err(|e| e.to_string())?;
    let refresh = Duration::from_secs(settings.authentication_refresh_seconds.max(1));
    let refreshing = tokio::spawn(refresh_request_header_config(client, front_proxy, refresh));
    let result = app.run_until_stopped().await.map_err(|e| format!("serving failed: {e}"));
    refreshing.abort();
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
