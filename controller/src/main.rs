//! `website-controller`: reconciles Websites until SIGTERM.

use clap::Parser;
use website_controller::health::{self, Readiness};
use website_controller::metrics::Metrics;
use website_controller::settings::{LogFormat, Settings};
use website_controller::{Error, leader, reconcile};

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
    let client = client(metrics.clone()).await?;
    if !settings.leader_election.enabled {
        metrics.set_leader(true);
        return reconcile::run(client, &settings, readiness, metrics).await;
    }
    let candidate = leader::Candidate::new(client.clone(), &settings.leader_election)?;
    // A standby is ready: it answers its probes, and takes over when the leader goes.
    readiness.set_ready();
    let mut leadership = tokio::select! {
        leadership = candidate.lead() => leadership?,
        () = shutdown_signal() => {
            tracing::info!("stopped while standing by");
            return Ok(());
        }
    };
    metrics.set_leader(true);
    tracing::info!(identity = candidate.identity(), "holding the Lease: reconciling");
    let result = tokio::select! {
        result = reconcile::run(client, &settings, readiness, metrics.clone()) => result,
        () = leadership.lost() => Err(Error::LeaderElection(
            "lost the Lease, so another replica may be reconciling now: exiting, to stand by after a restart".into(),
        )),
    };
    metrics.set_leader(false);
    // Released at once, so that the standby takes over without waiting for the term to end.
    leadership.release().await;
    result
}

/// The client of the environment (`KUBECONFIG` or the in-cluster service account), counting its writes in
/// `metrics`: with two replicas, each one's count shows that only the leader writes.
async fn client(metrics: std::sync::Arc<Metrics>) -> Result<kube::Client, Error> {
    let config = kube::Config::infer().await.map_err(|e| Error::Client(kube::Error::InferConfig(e)))?;
    let count = tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        metrics.request(request.method(), request.uri().path());
        request
    });
    Ok(kube::client::ClientBuilder::try_from(config).map_err(Error::Client)?.with_layer(&count).build())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
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
