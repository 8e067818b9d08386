//! `website-webhook`: serves the Website admission webhook over TLS until SIGTERM.

use clap::Parser;
use website_webhook::server::Application;
use website_webhook::settings::{LogFormat, Settings};

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let settings = Settings::parse();
    init_tracing(settings.log_format);
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        tracing::debug!("a rustls crypto provider was already installed");
    }
    let result = match Application::build(&settings) {
        Ok(app) => app.run_until_stopped().await,
        Err(e) => Err(e),
    };
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

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
