//! The webhook over real sockets: TLS versions and trust, certificate rotation without dropped
//! connections, broken files that keep the old certificate, start-up errors that name the file, the health
//! listener, and the `website-webhook` binary from start to SIGTERM.

mod support;

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::rt::task::JoinHandle;
use rustls::version::{TLS12, TLS13};
use rustls::{CertificateError, ProtocolVersion};
use serde_json::{Value, json};
use support::net::{CertDir, Http, Pki, https, peer_leaf, rustls_error, tls_connect};
use support::{UID, body, create, eventually};
use tokio::net::TcpStream;
use website_webhook::server::Application;
use website_webhook::settings::Settings;
use website_webhook::tls::{CertificateFiles, ReloadingCertResolver};

/// Longest wait for a reload; `Settings::for_tests` checks the files every second.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);
/// How long broken files are left in place: a few reload intervals.
const BROKEN_FOR: Duration = Duration::from_millis(3500);
const POLL: Duration = Duration::from_millis(100);

/// The webhook, built from `settings` and serving on the test's runtime.
struct Running {
    port: u16,
    health_port: Option<u16>,
    resolver: Arc<ReloadingCertResolver>,
    handle: ServerHandle,
    task: JoinHandle<website_webhook::Result<()>>,
}

/// `Settings::for_tests` without the plain-HTTP health listener, for the tests about TLS and admission; the
/// health listener has tests of its own.
fn https_only(files: &CertificateFiles) -> Settings {
    Settings { health_addr: None, ..Settings::for_tests(files) }
}

impl Running {
    fn start(settings: &Settings) -> Self {
        let app = match Application::build(settings) {
            Ok(app) => app,
            Err(e) => panic!("the webhook does not start with valid certificate files: {e}"),
        };
        Self {
            port: app.port(),
            health_port: app.health_port(),
            resolver: app.cert_resolver(),
            handle: app.handle(),
            task: actix_web::rt::spawn(app.run_until_stopped()),
        }
    }

    /// Stops the server gracefully and checks that `run_until_stopped` ended without error.
    async fn stop(self) {
        tokio::time::timeout(Duration::from_secs(10), self.handle.stop(true)).await.expect("the server stops");
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("run_until_stopped returns once the admission listener stops")
            .expect("run_until_stopped does not panic");
        if let Err(e) = result {
            panic!("run_until_stopped failed: {e}");
        }
    }
}

fn valid_review() -> Vec<u8> {
    body(&create(json!({"gitRepo": "https://github.com/luksa/kubia-website-example.git"})))
}

fn local_path_review() -> Vec<u8> {
    body(&create(json!({"gitRepo": "file:///etc"})))
}

/// Posts a valid review over `conn` and checks the answer that comes back over the wire.
async fn assert_admits<S>(conn: &mut Http<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let response = conn.post("/validate", &valid_review()).await.expect("the exchange completes");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"), "{response:?}");
    let review = response.json();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review:#}");
    assert_eq!(review["kind"], "AdmissionReview", "{review:#}");
    assert_eq!(review["response"]["uid"], UID, "{review:#}");
    assert_eq!(review["response"]["allowed"], true, "{review:#}");
}

/// Checks that `error` is a handshake the client refused because of `expected`.
fn assert_refused(error: &std::io::Error, expected: impl Fn(&CertificateError) -> bool) {
    match rustls_error(error) {
        Some(rustls::Error::InvalidCertificate(reason)) if expected(reason) => {}
        other => panic!("expected the client to refuse the certificate, got {error} ({other:?})"),
    }
}

fn unknown_issuer(reason: &CertificateError) -> bool {
    *reason == CertificateError::UnknownIssuer
}

#[actix_web::test]
async fn serves_admission_reviews_over_tls_1_3_to_a_client_trusting_only_the_ca() {
    let certs = CertDir::new();
    let server = Running::start(&https_only(&certs.files));

    let mut conn = https(server.port, certs.pki.client(&[&TLS13])).await.expect("the handshake succeeds");
    let (_, tls) = conn.stream().get_ref();
    assert_eq!(tls.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(peer_leaf(conn.stream()), certs.pki.leaf_der());
    assert_admits(&mut conn).await;

    // The same connection (keep-alive) carries the next review: a denial, as the API server gets it.
    let response = conn.post("/validate", &local_path_review()).await.expect("the connection is kept alive");
    assert_eq!(response.status, 200, "{}", response.text());
    let review = response.json();
    assert_eq!(review["response"]["uid"], UID, "{review:#}");
    assert_eq!(review["response"]["allowed"], false, "{review:#}");
    assert_eq!(review["response"]["status"]["code"], 422, "{review:#}");
    assert_eq!(review["response"]["status"]["details"]["causes"][0]["field"], "spec.gitRepo", "{review:#}");
    drop(conn);

    // The certificate also names the loopback address, for a webhook configuration that uses a URL.
    let by_ip = tls_connect(server.port, certs.pki.client(&[&TLS13]), "127.0.0.1").await;
    assert_eq!(peer_leaf(&by_ip.expect("the certificate is valid for 127.0.0.1")), certs.pki.leaf_der());

    server.stop().await;
}

#[actix_web::test]
async fn serves_a_client_that_speaks_only_tls_1_2() {
    let certs = CertDir::new();
    let server = Running::start(&https_only(&certs.files));

    let mut conn = https(server.port, certs.pki.client(&[&TLS12])).await.expect("the TLS 1.2 handshake succeeds");
    let (_, tls) = conn.stream().get_ref();
    assert_eq!(tls.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_admits(&mut conn).await;
    drop(conn);

    server.stop().await;
}

#[actix_web::test]
async fn negotiates_http_1_1_with_a_client_that_offers_h2_first_as_kube_apiserver_does() {
    let certs = CertDir::new();
    let server = Running::start(&https_only(&certs.files));

    let mut config = (*certs.pki.client(&[&TLS13, &TLS12])).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let stream = tls_connect(server.port, Arc::new(config), "localhost").await.expect("the handshake succeeds");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_admits(&mut Http::new(stream)).await;

    server.stop().await;
}

#[actix_web::test]
async fn a_client_refuses_a_server_certificate_from_another_ca_or_for_another_name() {
    let certs = CertDir::new();
    let server = Running::start(&https_only(&certs.files));

    let stranger = Pki::localhost("some-other-ca");
    for versions in [&[&TLS13][..], &[&TLS12][..]] {
        let error = tls_connect(server.port, stranger.client(versions), "localhost")
            .await
            .expect_err("a client that trusts only another CA refuses the handshake");
        assert_refused(&error, unknown_issuer);
    }

    let error = tls_connect(server.port, certs.pki.client(&[&TLS13]), "website-webhook.example.com")
        .await
        .expect_err("the certificate does not name website-webhook.example.com");
    assert_refused(&error, |reason| {
        matches!(reason, CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })
    });

    // The refused handshakes did not disturb the server.
    assert_admits(&mut https(server.port, certs.pki.client(&[&TLS13])).await.expect("handshake")).await;
    server.stop().await;
}

#[actix_web::test]
async fn rotation_serves_the_new_certificate_to_new_connections_without_dropping_open_ones() {
    let certs = CertDir::new();
    let server = Running::start(&https_only(&certs.files));

    let mut before = https(server.port, certs.pki.client(&[&TLS13])).await.expect("handshake before the rotation");
    assert_admits(&mut before).await;

    let rotated = Pki::localhost("rotated-ca");
    certs.rewrite_in_place(rotated.serving.cert_pem(), rotated.serving.key_pem());

    let new_client = rotated.client(&[&TLS13]);
    let fresh =
        eventually("a client trusting only the new CA completes a handshake", RELOAD_DEADLINE, POLL, async || {
            // The connection opened before the rotation keeps working all along.
            assert_admits(&mut before).await;
            match tls_connect(server.port, new_client.clone(), "localhost").await {
                Ok(stream) => Some(stream),
                Err(error) => {
                    assert_refused(&error, unknown_issuer);
                    None
                }
            }
        })
        .await;
    assert_eq!(peer_leaf(&fresh), rotated.leaf_der(), "the new connection sees the new certificate");
    assert_eq!(server.resolver.current_chain(), vec![rotated.leaf_der()]);
    assert_admits(&mut Http::new(fresh)).await;

    // The old connection keeps the certificate it started with and still completes requests.
    assert_eq!(peer_leaf(before.stream()), certs.pki.leaf_der());
    assert_admits(&mut before).await;

    // New clients that only know the old CA are now refused: the old certificate is no longer served.
    let error = tls_connect(server.port, certs.pki.client(&[&TLS13]), "localhost")
        .await
        .expect_err("the old certificate is no longer served");
    assert_refused(&error, unknown_issuer);

    drop(before);
    server.stop().await;
}

/// For `duration`, keeps opening connections with a client that trusts only `pki`'s CA and checks that each
/// gets `pki`'s certificate and an answer.
async fn keeps_serving(port: u16, pki: &Pki, duration: Duration) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let mut conn = https(port, pki.client(&[&TLS13])).await.expect("clients trusting the old CA still connect");
        assert_eq!(peer_leaf(conn.stream()), pki.leaf_der(), "the old certificate is still served");
        assert_admits(&mut conn).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[actix_web::test]
async fn broken_new_files_keep_the_old_certificate_until_a_good_pair_arrives() {
    let certs = CertDir::new();
    let server = Running::start(&https_only(&certs.files));
    let original_key = certs.pki.serving.key_pem().to_owned();

    // A key file that holds no key at all.
    certs.rewrite_key("this is not a private key\n");
    keeps_serving(server.port, &certs.pki, BROKEN_FOR).await;

    // A real key that belongs to another certificate.
    let other = Pki::localhost("other-ca");
    certs.rewrite_key(other.serving.key_pem());
    keeps_serving(server.port, &certs.pki, BROKEN_FOR).await;

    // A new certificate whose key never arrives (the old key stays): still the old certificate.
    certs.rewrite_in_place(other.serving.cert_pem(), &original_key);
    keeps_serving(server.port, &certs.pki, BROKEN_FOR).await;
    assert_eq!(server.resolver.current_chain(), vec![certs.pki.leaf_der()]);

    // The watcher was alive all along: a good pair is picked up.
    certs.rewrite_key(other.serving.key_pem());
    let new_client = other.client(&[&TLS13]);
    let stream = eventually("the good pair is served", RELOAD_DEADLINE, POLL, async || {
        tls_connect(server.port, new_client.clone(), "localhost").await.ok()
    })
    .await;
    assert_eq!(peer_leaf(&stream), other.leaf_der());
    drop(stream);

    server.stop().await;
}

fn reload_error(resolver: &ReloadingCertResolver) -> String {
    match resolver.reload_if_changed() {
        Err(e) => e.to_string(),
        Ok(switched) => panic!("expected the reload to fail, it returned Ok({switched})"),
    }
}

#[test]
fn reload_if_changed_reports_broken_files_by_name_and_keeps_the_old_chain() {
    let certs = CertDir::new();
    let (cert, key) = (certs.files.cert.display().to_string(), certs.files.key.display().to_string());
    let resolver = ReloadingCertResolver::load(certs.files.clone()).expect("valid files load");
    let old_chain = vec![certs.pki.leaf_der()];
    assert!(!resolver.reload_if_changed().expect("unchanged files reload"), "nothing changed");

    certs.rewrite_key("this is not a private key\n");
    let message = reload_error(&resolver);
    assert!(message.starts_with(&format!("failed to load TLS key file {key}: no PEM private key found")), "{message}");
    assert_eq!(resolver.current_chain(), old_chain);
    // The same broken files are reported once, not on every check; the old chain stays.
    assert!(!resolver.reload_if_changed().expect("already reported"));
    assert_eq!(resolver.current_chain(), old_chain);

    let other = Pki::localhost("other-ca");
    certs.rewrite_key(other.serving.key_pem());
    let message = reload_error(&resolver);
    assert!(
        message.starts_with(&format!("failed to pair the TLS key {key} with the certificate {cert}: ")),
        "{message}"
    );
    assert_eq!(resolver.current_chain(), old_chain);

    std::fs::write(&certs.files.cert, "").expect("truncate the certificate");
    let message = reload_error(&resolver);
    assert_eq!(message, format!("failed to load TLS certificate file {cert}: no PEM CERTIFICATE block found"));
    assert_eq!(resolver.current_chain(), old_chain);

    std::fs::remove_file(&certs.files.cert).expect("remove the certificate");
    let message = reload_error(&resolver);
    assert!(message.starts_with(&format!("failed to read TLS certificate file {cert}: ")), "{message}");
    assert_eq!(resolver.current_chain(), old_chain);

    certs.rewrite_in_place(other.serving.cert_pem(), other.serving.key_pem());
    assert!(resolver.reload_if_changed().expect("a good pair loads"), "switched to the new pair");
    assert_eq!(resolver.current_chain(), vec![other.leaf_der()]);
}

#[actix_web::test]
async fn build_fails_naming_the_file_and_what_is_wrong_with_it() {
    let certs = CertDir::new();
    let dir = certs.dir.path();
    let write = |name: &str, contents: &str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write a test file");
        path
    };
    let good_cert = certs.files.cert.clone();
    let good_key = certs.files.key.clone();
    let other = Pki::localhost("other-ca");

    // Each message must start with the first text and end with the second, `{cert}` and `{key}` standing
    // for the paths passed in.
    const NOT_FOUND: &str = ": No such file or directory (os error 2)";
    const NO_CERT: &str = ": no PEM CERTIFICATE block found";
    const NO_KEY: &str = "; PKCS#8, PKCS#1 and SEC1 keys are accepted";
    let cases = [
        (
            "a missing certificate",
            dir.join("missing.crt"),
            good_key.clone(),
            ("failed to read TLS certificate file {cert}", NOT_FOUND),
        ),
        ("a missing key", good_cert.clone(), dir.join("missing.key"), ("failed to read TLS key file {key}", NOT_FOUND)),
        (
            "an empty certificate file",
            write("empty.crt", ""),
            good_key.clone(),
            ("failed to load TLS certificate file {cert}", NO_CERT),
        ),
        (
            "a key where the certificate belongs",
            write("swapped.crt", certs.pki.serving.key_pem()),
            good_key.clone(),
            ("failed to load TLS certificate file {cert}", NO_CERT),
        ),
        (
            "an empty key file",
            good_cert.clone(),
            write("empty.key", ""),
            ("failed to load TLS key file {key}: no PEM private key found (", NO_KEY),
        ),
        (
            "a certificate where the key belongs",
            good_cert.clone(),
            write("swapped.key", certs.pki.serving.cert_pem()),
            ("failed to load TLS key file {key}: no PEM private key found (", NO_KEY),
        ),
        (
            "a key that does not match the certificate",
            good_cert.clone(),
            write("other.key", other.serving.key_pem()),
            (
                "failed to pair the TLS key {key} with the certificate {cert}",
                ": keys may not be consistent: KeyMismatch",
            ),
        ),
    ];
    for (case, cert, key, (prefix, suffix)) in cases {
        let prefix = prefix.replace("{cert}", &cert.display().to_string()).replace("{key}", &key.display().to_string());
        let files = CertificateFiles { cert, key };
        let error = Application::build(&Settings::for_tests(&files)).err().unwrap_or_else(|| panic!("{case}: started"));
        let message = error.to_string();
        assert!(message.starts_with(&prefix), "{case}: expected {prefix:?} at the start of {message:?}");
        assert!(message.ends_with(suffix), "{case}: expected {suffix:?} at the end of {message:?}");
    }
}

/// GETs `path` over plain HTTP on `port`.
async fn plain_get(port: u16, path: &str) -> std::io::Result<support::net::Response> {
    let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
    Http::new(tcp).send("GET", path, b"").await
}

#[actix_web::test]
async fn serves_probes_over_https() {
    let certs = CertDir::new();
    let server = Running::start(&https_only(&certs.files));
    let mut conn = https(server.port, certs.pki.client(&[&TLS13])).await.expect("handshake");
    for path in ["/healthz", "/readyz"] {
        let response = conn.send("GET", path, b"").await.expect("exchange");
        assert_eq!((response.status, response.text().as_str()), (200, "ok"), "{path}");
    }
    drop(conn);
    server.stop().await;
}

#[actix_web::test]
async fn stopping_the_handle_ends_run_until_stopped_and_closes_the_listener() {
    let certs = CertDir::new();
    let server = Running::start(&https_only(&certs.files));
    let port = server.port;
    assert_admits(&mut https(port, certs.pki.client(&[&TLS13])).await.expect("handshake")).await;

    server.stop().await;
    eventually("the HTTPS listener is closed", Duration::from_secs(5), POLL, async || {
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.is_err().then_some(())
    })
    .await;
}

#[actix_web::test]
async fn the_health_listener_answers_probes_while_the_webhook_runs() {
    let certs = CertDir::new();
    let server = Running::start(&Settings::for_tests(&certs.files));
    let health_port = server.health_port.expect("for_tests enables the health listener");

    for path in ["/healthz", "/readyz"] {
        let response = plain_get(health_port, path).await.expect("the health listener answers");
        assert_eq!((response.status, response.text().as_str()), (200, "ok"), "{path}");
    }
    // Admission is only served over TLS.
    let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, health_port)).await.expect("connect");
    let response = Http::new(tcp).post("/validate", &valid_review()).await.expect("the health listener answers");
    assert_eq!(response.status, 404, "{}", response.text());

    server.stop().await;
}

#[actix_web::test]
async fn with_the_health_listener_stopping_ends_run_until_stopped_and_closes_both_listeners() {
    let certs = CertDir::new();
    let server = Running::start(&Settings::for_tests(&certs.files));
    let (port, health_port) = (server.port, server.health_port.expect("for_tests enables the health listener"));
    assert_admits(&mut https(port, certs.pki.client(&[&TLS13])).await.expect("handshake")).await;

    server.stop().await;
    for port in [port, health_port] {
        eventually("both listeners are closed", Duration::from_secs(5), POLL, async || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.is_err().then_some(())
        })
        .await;
    }
}

// --- the binary -------------------------------------------------------------------------------------------

/// A child process that is killed if the test ends before it exits.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl ChildGuard {
    /// Waits for the process to exit, polling until `deadline`; `None` if it is still running.
    async fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().expect("the child can be waited for") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A port that was free a moment ago; the caller retries if someone else takes it first.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    listener.local_addr().expect("a bound socket has an address").port()
}

/// `website-webhook` with only the given flags (no `WEBHOOK_*` variables from the environment), its stderr
/// written to `stderr`.
///
/// Its kubeconfig, next to `stderr`, names an API server where none listens: the binary needs one to start, and
/// these tests send no Website with credentials, the only thing it calls the API server for.
fn webhook_command(args: &[&str], stderr: &Path) -> Command {
    let kubeconfig = stderr.with_file_name("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: none\n\
         clusters: [{name: none, cluster: {server: \"https://127.0.0.1:9\"}}]\n\
         users: [{name: none, user: {}}]\ncontexts: [{name: none, context: {cluster: none, user: none}}]\n",
    )
    .expect("write a kubeconfig");
    let mut command = Command::new(env!("CARGO_BIN_EXE_website-webhook"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WEBHOOK_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("RUST_LOG", "info")
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(stderr).expect("create the stderr file"));
    command
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A running `website-webhook` and what the test needs to talk to it.
struct Binary {
    child: ChildGuard,
    port: u16,
    health_port: Option<u16>,
    stderr: std::path::PathBuf,
}

impl Binary {
    /// Starts the binary on free loopback ports, with the health listener if `health`, and waits until it
    /// completes TLS handshakes. A port taken between picking and binding makes it retry with new ones.
    async fn start(certs: &CertDir, health: bool) -> Self {
        let stderr = certs.dir.path().join("stderr.log");
        let (cert, key) = (certs.files.cert.display().to_string(), certs.files.key.display().to_string());
        let client = certs.pki.client(&[&TLS13]);
        for attempt in 1..=5 {
            let port = free_port();
            let health_port = health.then(free_port);
            let listen = format!("127.0.0.1:{port}");
            let health_addr = health_port.map_or_else(|| "off".to_owned(), |p| format!("127.0.0.1:{p}"));
            let args = [
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--listen-addr",
                &listen,
                "--health-addr",
                &health_addr,
                "--workers",
                "1",
                "--shutdown-timeout-seconds",
                "2",
            ];
            let mut child = ChildGuard(webhook_command(&args, &stderr).spawn().expect("the binary starts"));
            let started = eventually("the binary accepts TLS connections", Duration::from_secs(20), POLL, async || {
                if let Some(status) = child.0.try_wait().expect("the child can be waited for") {
                    return Some(Err(status));
                }
                tls_connect(port, client.clone(), "localhost").await.ok().map(|_| Ok(()))
            })
            .await;
            match started {
                Ok(()) => return Self { child, port, health_port, stderr },
                Err(status) if read(&stderr).contains("failed to listen on") => {
                    eprintln!("attempt {attempt}: a port was taken ({status}), retrying with new ones");
                }
                Err(status) => panic!("the binary exited with {status} before serving:\n{}", read(&stderr)),
            }
        }
        panic!("could not find free ports in 5 attempts:\n{}", read(&stderr));
    }

    /// Sends SIGTERM and checks that the binary exits with status 0 within a few seconds.
    async fn terminate_and_expect_success(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.0.id()).expect("pids fit in i32"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("send SIGTERM");
        let status = self.child.exit_within(Duration::from_secs(10)).await;
        let logs = read(&self.stderr);
        let status = status.unwrap_or_else(|| panic!("the binary did not exit within 10 s of SIGTERM:\n{logs}"));
        assert!(status.success(), "the binary exited with {status} after SIGTERM:\n{logs}");
    }
}

#[actix_web::test]
async fn the_binary_denies_over_https_and_exits_0_on_sigterm() {
    let certs = CertDir::new();
    let binary = Binary::start(&certs, false).await;

    let mut conn = https(binary.port, certs.pki.client(&[&TLS13])).await.expect("handshake");
    let response = conn.post("/validate", &local_path_review()).await.expect("the binary answers");
    assert_eq!(response.status, 200, "{}", response.text());
    let review: Value = response.json();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review:#}");
    assert_eq!(review["response"]["uid"], UID, "{review:#}");
    assert_eq!(review["response"]["allowed"], false, "{review:#}");
    assert_eq!(review["response"]["status"]["code"], 422, "{review:#}");
    let message = review["response"]["status"]["message"].as_str().expect("a message");
    assert!(message.starts_with("spec.gitRepo: "), "{message}");
    drop(conn);

    binary.terminate_and_expect_success().await;
}

#[actix_web::test]
async fn the_binary_answers_probes_on_its_health_listener() {
    let certs = CertDir::new();
    let binary = Binary::start(&certs, true).await;
    let health_port = binary.health_port.expect("started with a health listener");

    for path in ["/healthz", "/readyz"] {
        let probe = plain_get(health_port, path).await;
        let probe = probe.unwrap_or_else(|e| panic!("{path} is not answered: {e}\n{}", read(&binary.stderr)));
        assert_eq!((probe.status, probe.text().as_str()), (200, "ok"), "{path}");
    }
}

#[actix_web::test]
async fn the_binary_with_its_health_listener_exits_0_on_sigterm() {
    // The health listener is on by default (0.0.0.0:8080), so this is how the binary runs in a pod.
    let certs = CertDir::new();
    let binary = Binary::start(&certs, true).await;
    assert_admits(&mut https(binary.port, certs.pki.client(&[&TLS13])).await.expect("handshake")).await;
    binary.terminate_and_expect_success().await;
}

#[actix_web::test]
async fn the_binary_exits_non_zero_naming_a_missing_certificate_file() {
    let certs = CertDir::new();
    let stderr = certs.dir.path().join("stderr.log");
    let missing = certs.dir.path().join("no-such.crt");
    let (missing, key) = (missing.display().to_string(), certs.files.key.display().to_string());
    let args =
        ["--tls-cert-file", &missing, "--tls-key-file", &key, "--listen-addr", "127.0.0.1:0", "--health-addr", "off"];
    let mut child = ChildGuard(webhook_command(&args, &stderr).spawn().expect("the binary starts"));

    let status = child.exit_within(Duration::from_secs(20)).await;
    let logs = read(&stderr);
    let status = status.unwrap_or_else(|| panic!("the binary kept running without a certificate:\n{logs}"));
    assert!(!status.success(), "exited with {status}:\n{logs}");
    assert!(logs.contains(&format!("error: failed to read TLS certificate file {missing}: ")), "{logs}");
}

#[actix_web::test]
async fn the_binary_exits_non_zero_without_an_api_server_to_check_secret_access_with() {
    let certs = CertDir::new();
    let stderr = certs.dir.path().join("stderr.log");
    let (cert, key) = (certs.files.cert.display().to_string(), certs.files.key.display().to_string());
    let args =
        ["--tls-cert-file", &cert, "--tls-key-file", &key, "--listen-addr", "127.0.0.1:0", "--health-addr", "off"];
    let mut command = webhook_command(&args, &stderr);
    // Neither a kubeconfig nor a pod's service account.
    command
        .env("KUBECONFIG", certs.dir.path().join("no-such-kubeconfig"))
        .env("HOME", certs.dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST");
    let mut child = ChildGuard(command.spawn().expect("the binary starts"));

    let status = child.exit_within(Duration::from_secs(20)).await;
    let logs = read(&stderr);
    let status = status.unwrap_or_else(|| panic!("the binary kept running without an API server:\n{logs}"));
    assert!(!status.success(), "exited with {status}:\n{logs}");
    assert!(
        logs.contains("error: failed to find the API server's address and credentials (in-cluster service account or kubeconfig), needed to check access to the Secrets that Websites refer to"),
        "{logs}"
    );
}
