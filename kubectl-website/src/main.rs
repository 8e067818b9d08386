//! `kubectl-website`: run as `kubectl website …` once on `PATH`.

use clap::Parser as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        // Already installed: nothing to do.
    }
    let cli = kubectl_website::cli::Cli::parse();
    match kubectl_website::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            std::process::ExitCode::from(failure.exit_code())
        }
    }
}
