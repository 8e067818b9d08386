//! The `website-certs` binary, run as a script would run it.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use common::{San, parse, pem_der, sans};

const BIN: &str = env!("CARGO_BIN_EXE_website-certs");

/// Runs the binary with `args` and no `WEBSITE_CERTS_*` variables from the caller's environment.
fn run(args: &[&str]) -> Output {
    run_with_env(args, &[])
}

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("WEBSITE_CERTS_") {
            command.env_remove(key);
        }
    }
    command.args(args).envs(env.iter().copied());
    command.output().expect("binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr")
}

fn assert_success(output: &Output) {
    assert!(output.status.success(), "status {:?}, stderr: {}", output.status, stderr(output));
}

/// Asserts a failure reported as a single "error: ..." line, not a panic.
fn assert_one_line_error(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(output));
    assert!(output.stdout.is_empty(), "stdout: {}", stdout(output));
    let err = stderr(output);
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn out_dir_arg(dir: &Path) -> String {
    dir.to_str().expect("UTF-8 temp path").to_owned()
}

#[test]
fn prints_only_the_ca_bundle_and_writes_the_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("certs");
    let output = run(&[
        "--out-dir",
        &out_dir_arg(&dir),
        "--service",
        "website-webhook",
        "--namespace",
        "website-system",
        "--dns",
        "webhook.example.com",
        "--ip",
        "127.0.0.1",
        "--validity-days",
        "30",
    ]);
    assert_success(&output);

    // stdout is exactly one line: the caBundle.
    let out = stdout(&output);
    assert_eq!(out.lines().count(), 1, "{out}");
    let bundle = out.trim_end();
    let decoded = base64::engine::general_purpose::STANDARD.decode(bundle).expect("stdout is standard base64");
    let ca_pem = fs::read_to_string(dir.join("ca.crt")).expect("ca.crt");
    assert_eq!(decoded, ca_pem.as_bytes());

    // stderr lists the written paths.
    let err = stderr(&output);
    for name in ["ca.crt", "tls.crt", "tls.key"] {
        let path = dir.join(name);
        assert!(err.contains(&format!("wrote {}", path.display())), "{err}");
    }
    assert!(!dir.join("ca.key").exists());
    assert_eq!(fs::metadata(dir.join("tls.key")).expect("tls.key").permissions().mode() & 0o777, 0o600);

    // The serving certificate has the service names, then --dns, then --ip, and chains to ca.crt.
    let leaf_pem = fs::read_to_string(dir.join("tls.crt")).expect("tls.crt");
    let leaf_der = pem_der(&leaf_pem, "CERTIFICATE");
    let leaf = parse(&leaf_der);
    assert_eq!(
        sans(&leaf),
        [
            San::Dns("website-webhook".to_owned()),
            San::Dns("website-webhook.website-system".to_owned()),
            San::Dns("website-webhook.website-system.svc".to_owned()),
            San::Dns("website-webhook.website-system.svc.cluster.local".to_owned()),
            San::Dns("webhook.example.com".to_owned()),
            San::Ip("127.0.0.1".parse().expect("IP")),
        ]
    );
    let ca_der = pem_der(&ca_pem, "CERTIFICATE");
    let ca = parse(&ca_der);
    leaf.verify_signature(Some(ca.public_key())).expect("tls.crt signed by ca.crt");
    let lifetime = leaf.validity().not_after.to_datetime() - time::OffsetDateTime::now_utc();
    assert!((lifetime - time::Duration::days(30)).abs() < time::Duration::minutes(1), "{lifetime}");
}

#[test]
fn refuses_to_overwrite_without_force_and_replaces_with_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = out_dir_arg(tmp.path());
    let args = ["--out-dir", dir.as_str(), "--dns", "webhook.local"];
    let first = run(&args);
    assert_success(&first);
    let ca_before = fs::read(tmp.path().join("ca.crt")).expect("ca.crt");
    let key_before = fs::read(tmp.path().join("tls.key")).expect("tls.key");

    let second = run(&args);
    let err = assert_one_line_error(&second);
    assert!(err.contains("ca.crt"), "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(fs::read(tmp.path().join("ca.crt")).expect("ca.crt"), ca_before);
    assert_eq!(fs::read(tmp.path().join("tls.key")).expect("tls.key"), key_before);

    let forced = run(&[&args[..], &["--force"]].concat());
    assert_success(&forced);
    let ca_after = fs::read_to_string(tmp.path().join("ca.crt")).expect("ca.crt");
    assert_ne!(ca_after.as_bytes(), ca_before);
    let bundle = base64::engine::general_purpose::STANDARD.decode(stdout(&forced).trim_end()).expect("base64");
    assert_eq!(bundle, ca_after.as_bytes());
}

#[test]
fn fails_clearly_when_no_names_are_given() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let output = run(&["--out-dir", &out_dir_arg(tmp.path())]);
    let err = assert_one_line_error(&output);
    assert!(err.contains("--service"), "{err}");
    assert!(err.contains("--dns"), "{err}");
    assert!(err.contains("--ip"), "{err}");
    assert!(err.contains("at least one"), "{err}");
    assert!(fs::read_dir(tmp.path()).expect("dir").next().is_none(), "nothing may be written");
}

#[test]
fn fails_clearly_on_invalid_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = out_dir_arg(tmp.path());

    let output = run(&["--out-dir", &dir, "--dns", "Bad_Name"]);
    let err = assert_one_line_error(&output);
    assert!(err.contains("failed to validate DNS name \"Bad_Name\""), "{err}");

    let output = run(&["--out-dir", &dir, "--service", "1webhook", "--namespace", "default"]);
    let err = assert_one_line_error(&output);
    assert!(err.contains("failed to validate service name \"1webhook\""), "{err}");
    assert!(err.contains("RFC 1035"), "{err}");

    // Usage errors are clap's: exit code 2 and a message naming the flag.
    let output = run(&["--out-dir", &dir, "--service", "webhook"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--namespace"), "{}", stderr(&output));

    let output = run(&["--out-dir", &dir, "--ip", "not-an-ip"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--ip"), "{}", stderr(&output));

    let output = run(&["--out-dir", &dir, "--dns", "a", "--validity-days", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--validity-days"), "{}", stderr(&output));

    assert!(fs::read_dir(tmp.path()).expect("dir").next().is_none());
}

#[test]
fn reads_settings_from_the_environment_and_can_keep_the_ca_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = out_dir_arg(tmp.path());
    let output = run_with_env(
        &[],
        &[
            ("WEBSITE_CERTS_OUT_DIR", dir.as_str()),
            ("WEBSITE_CERTS_SERVICE", "website-webhook"),
            ("WEBSITE_CERTS_NAMESPACE", "website-system"),
            ("WEBSITE_CERTS_IP", "10.0.0.1,fd00::1"),
            ("WEBSITE_CERTS_WRITE_CA_KEY", "true"),
        ],
    );
    assert_success(&output);

    let ca_pem = fs::read_to_string(tmp.path().join("ca.crt")).expect("ca.crt");
    let ca_key = fs::read_to_string(tmp.path().join("ca.key")).expect("ca.key written");
    assert_eq!(fs::metadata(tmp.path().join("ca.key")).expect("ca.key").permissions().mode() & 0o777, 0o600);
    // The kept CA key loads back and issues certificates for the same caBundle.
    let ca = website_certs::CertificateAuthority::from_pem(&ca_pem, &ca_key).expect("CA loads");
    assert_eq!(website_certs::ca_bundle_base64(ca.cert_pem()), stdout(&output).trim_end());

    let leaf_pem = fs::read_to_string(tmp.path().join("tls.crt")).expect("tls.crt");
    let leaf_der = pem_der(&leaf_pem, "CERTIFICATE");
    let names = sans(&parse(&leaf_der));
    assert_eq!(names.len(), 6, "{names:?}");
    assert_eq!(names[4], San::Ip("10.0.0.1".parse().expect("IP")));
    assert_eq!(names[5], San::Ip("fd00::1".parse().expect("IP")));

    // Boolean variables accept the usual spellings; "no" leaves --force off.
    let env = [("WEBSITE_CERTS_OUT_DIR", dir.as_str()), ("WEBSITE_CERTS_DNS", "a.example,b.example")];
    let output = run_with_env(&[], &[&env[..], &[("WEBSITE_CERTS_FORCE", "no")]].concat());
    assert!(assert_one_line_error(&output).contains("already exists"));
    let output = run_with_env(&[], &[&env[..], &[("WEBSITE_CERTS_FORCE", "1")]].concat());
    assert_success(&output);
    assert!(!tmp.path().join("ca.key").exists(), "the old CA key must not outlive its ca.crt");
    assert!(stderr(&output).contains("removed "), "{}", stderr(&output));
    let leaf_pem = fs::read_to_string(tmp.path().join("tls.crt")).expect("tls.crt");
    let leaf_der = pem_der(&leaf_pem, "CERTIFICATE");
    assert_eq!(sans(&parse(&leaf_der)), [San::Dns("a.example".to_owned()), San::Dns("b.example".to_owned())]);
}
