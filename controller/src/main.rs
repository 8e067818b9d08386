//! `website-controller`: reconciles Websites until SIGTERM.

use clap::Parser;
use website_controller::health::{self, Readiness};
use website_controller::metrics::Metrics;
use website_controller::settings::{LogFormat, Settings};
use website_controller::{Error, reconcile};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings = Settings::parse();
    init_tracing(settings.log_format);
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        tracing::debug!("a rustls crypto provider was already installed");
    }
    match run(settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "controller failed");
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), Error> {
    let readiness = Readiness::default();
    let metrics = std::sync::Arc::new(Metrics::new());
    if let Some(addr) = settings.health_addr {
        let listener = health::bind(addr).await?;
        tokio::spawn(health::serve(listener, readiness.clone(), metrics.clone()));
    }
    let client = kube::Client::try_default().await.map_err(Error::Client)?;
    reconcile::run(client, &settings, readiness, metrics).await
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
