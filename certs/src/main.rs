//! `website-certs`: generates a CA and a serving certificate for the Website admission webhook,
//! writes `ca.crt`, `tls.crt` and `tls.key`, and prints the base64 `caBundle` on stdout.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Parser;
use clap::builder::BoolishValueParser;
use time::format_description::well_known::Rfc3339;
use website_certs::{CertificateAuthority, SubjectName};

/// Generate a CA and a TLS serving certificate for the Website admission webhook.
///
/// Writes ca.crt, tls.crt and tls.key (mode 0600) into --out-dir and prints ONLY the
/// base64-encoded CA certificate (the webhook configuration's caBundle) on stdout, so that
/// `CA_BUNDLE=$(website-certs ...)` works. Progress goes to stderr.
#[derive(Debug, Parser)]
#[command(name = "website-certs", version)]
struct Cli {
    /// Directory to write the files into; created if missing.
    #[arg(long, env = "WEBSITE_CERTS_OUT_DIR", value_name = "DIR")]
    out_dir: PathBuf,

    /// Service the webhook is served by; adds NAME, NAME.NS, NAME.NS.svc and
    /// NAME.NS.svc.cluster.local. Requires --namespace.
    #[arg(long, env = "WEBSITE_CERTS_SERVICE", value_name = "NAME", requires = "namespace")]
    service: Option<String>,

    /// Namespace of --service.
    #[arg(long, env = "WEBSITE_CERTS_NAMESPACE", value_name = "NS", requires = "service")]
    namespace: Option<String>,

    /// Extra DNS name for the certificate (repeatable; comma-separated in the env variable).
    #[arg(long = "dns", env = "WEBSITE_CERTS_DNS", value_name = "NAME", value_delimiter = ',')]
    dns: Vec<String>,

    /// IP address for the certificate (repeatable; comma-separated in the env variable).
    #[arg(long = "ip", env = "WEBSITE_CERTS_IP", value_name = "ADDR", value_delimiter = ',')]
    ip: Vec<IpAddr>,

    /// Validity of the CA certificate, in days.
    #[arg(
        long,
        env = "WEBSITE_CERTS_CA_VALIDITY_DAYS",
        value_name = "DAYS",
        default_value_t = 3650,
        value_parser = clap::value_parser!(u32).range(1..=36_500)
    )]
    ca_validity_days: u32,

    /// Validity of the serving certificate, in days (capped at the CA's).
    #[arg(
        long,
        env = "WEBSITE_CERTS_VALIDITY_DAYS",
        value_name = "DAYS",
        default_value_t = 365,
        value_parser = clap::value_parser!(u32).range(1..=36_500)
    )]
    validity_days: u32,

    /// Common name of the generated CA.
    #[arg(long, env = "WEBSITE_CERTS_CA_COMMON_NAME", value_name = "CN", default_value = "website-webhook-ca")]
    ca_common_name: String,

    /// Also write the CA private key to ca.key (mode 0600), to re-issue serving certificates
    /// from the same CA later.
    #[arg(long, env = "WEBSITE_CERTS_WRITE_CA_KEY", value_parser = BoolishValueParser::new())]
    write_ca_key: bool,

    /// Overwrite existing files in --out-dir.
    #[arg(long, env = "WEBSITE_CERTS_FORCE", value_parser = BoolishValueParser::new())]
    force: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let names = subject_names(cli)?;

    let ca = CertificateAuthority::generate(&cli.ca_common_name, website_certs::days(cli.ca_validity_days))?;
    let serving = ca.issue_serving(&names, website_certs::days(cli.validity_days))?;

    let written = if cli.write_ca_key {
        website_certs::write_files_with_ca_key(
            &cli.out_dir,
            ca.cert_pem(),
            ca.key_pem(),
            serving.cert_pem(),
            serving.key_pem(),
            cli.force,
        )?
    } else {
        website_certs::write_files(&cli.out_dir, ca.cert_pem(), serving.cert_pem(), serving.key_pem(), cli.force)?
    };

    for path in written.paths() {
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &written.removed_ca_key {
        eprintln!("removed {}, which did not belong to the new CA", path.display());
    }
    let names = serving.names().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    eprintln!(
        "serving certificate for {names} valid until {}; CA valid until {}",
        rfc3339(serving.not_after()),
        rfc3339(ca.not_after())
    );

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", website_certs::ca_bundle_base64(ca.cert_pem()))
        .and_then(|()| stdout.flush())
        .context("failed to print the caBundle to stdout")
}

/// The subject names requested on the command line, service names first.
fn subject_names(cli: &Cli) -> anyhow::Result<Vec<SubjectName>> {
    let mut names = Vec::new();
    if let (Some(service), Some(namespace)) = (&cli.service, &cli.namespace) {
        names.extend(website_certs::service_dns_names(service, namespace)?.into_iter().map(SubjectName::Dns));
    }
    for dns in &cli.dns {
        names.push(SubjectName::dns(dns)?);
    }
    names.extend(cli.ip.iter().copied().map(SubjectName::Ip));
    if names.is_empty() {
        bail!(
            "failed to determine the certificate's names: none given; pass --service with \
             --namespace, --dns NAME or --ip ADDR (at least one)"
        );
    }
    Ok(names)
}

fn rfc3339(time: time::OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_else(|_| time.unix_timestamp().to_string())
}
