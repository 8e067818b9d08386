//! Certificates on disk, a rustls client that trusts only one CA, and a minimal HTTP/1.1 exchange over
//! any stream, so the tests see exactly what goes over the wire.

use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use website_certs::{
    CertificateAuthority, DEFAULT_CA_VALIDITY, DEFAULT_SERVING_VALIDITY, ServingCertificate, SubjectName,
};
use website_webhook::tls::CertificateFiles;

/// How long one connect, handshake or request/response exchange may take before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The DER form of the first certificate in `pem`.
pub fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("website-certs writes valid PEM certificates")
}

/// A CA and a serving certificate it issued for `localhost` and `127.0.0.1`.
pub struct Pki {
    /// The CA.
    pub ca: CertificateAuthority,
    /// The serving certificate and its key.
    pub serving: ServingCertificate,
}

impl Pki {
    /// A new CA named `ca_name` and a serving certificate for the loopback names.
    pub fn localhost(ca_name: &str) -> Self {
        let ca = CertificateAuthority::generate(ca_name, DEFAULT_CA_VALIDITY).expect("a CA can be generated");
        let names = [SubjectName::Dns("localhost".into()), SubjectName::Ip(Ipv4Addr::LOCALHOST.into())];
        let serving = ca.issue_serving(&names, DEFAULT_SERVING_VALIDITY).expect("loopback names are valid");
        Self { ca, serving }
    }

    /// The serving certificate in DER, as a TLS peer sees it.
    pub fn leaf_der(&self) -> CertificateDer<'static> {
        der(self.serving.cert_pem())
    }

    /// A client configuration that trusts only this CA and speaks `versions`.
    pub fn client(&self, versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
        client_config(self.ca.cert_pem(), versions)
    }
}

/// A temporary directory holding `ca.crt`, `tls.crt` and `tls.key`, written by `website-certs`.
pub struct CertDir {
    /// Deleted on drop.
    pub dir: TempDir,
    /// The serving certificate and key files.
    pub files: CertificateFiles,
    /// What the files hold at first.
    pub pki: Pki,
}

impl CertDir {
    /// A fresh directory with a new CA's serving certificate for the loopback names.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pki = Pki::localhost("website-webhook-test-ca");
        let written = website_certs::write_files(
            dir.path(),
            pki.ca.cert_pem(),
            pki.serving.cert_pem(),
            pki.serving.key_pem(),
            false,
        )
        .expect("the certificate files can be written");
        let files = CertificateFiles { cert: written.tls_cert, key: written.tls_key };
        Self { dir, files, pki }
    }

    /// Overwrites the certificate and then the key file in place (truncate and write, no rename), the way a
    /// careless tool would; a reader may see the new certificate with the old key for a moment.
    pub fn rewrite_in_place(&self, cert_pem: &str, key_pem: &str) {
        std::fs::write(&self.files.cert, cert_pem).expect("the certificate file can be rewritten");
        self.rewrite_key(key_pem);
    }

    /// Overwrites the key file in place.
    pub fn rewrite_key(&self, key_pem: &str) {
        std::fs::write(&self.files.key, key_pem).expect("the key file can be rewritten");
    }
}

/// Installs ring as the process-wide rustls provider; another test may have done so already.
pub fn install_crypto_provider() {
    // `Err` only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client configuration whose only root is the CA certificate in `ca_pem`.
pub fn client_config(ca_pem: &str, versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    install_crypto_provider();
    let mut roots = RootCertStore::empty();
    roots.add(der(ca_pem)).expect("the CA certificate is a valid trust anchor");
    let config =
        ClientConfig::builder_with_protocol_versions(versions).with_root_certificates(roots).with_no_client_auth();
    Arc::new(config)
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} took longer than {IO_TIMEOUT:?}"))
}

/// Connects to `127.0.0.1:port` and completes a TLS handshake for `server_name`.
///
/// # Errors
/// When the connection or the handshake fails; a certificate the client rejects gives an error whose
/// [`rustls_error`] says why.
pub async fn tls_connect(port: u16, config: Arc<ClientConfig>, server_name: &str) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(server_name).expect("a valid server name").to_owned();
    let handshake = async {
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        TlsConnector::from(config).connect(name, tcp).await
    };
    tokio::time::timeout(IO_TIMEOUT, handshake).await.map_err(|_| timed_out("the TLS handshake"))?
}

/// Like [`tls_connect`], wrapped for HTTP.
///
/// # Errors
/// As [`tls_connect`].
pub async fn https(port: u16, config: Arc<ClientConfig>) -> io::Result<Http<TlsStream<TcpStream>>> {
    tls_connect(port, config, "localhost").await.map(Http::new)
}

/// The rustls error behind a failed handshake, if that is what failed it.
pub fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The leaf certificate the server presented on this connection.
pub fn peer_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let (_, connection) = stream.get_ref();
    let chain = connection.peer_certificates().expect("a completed handshake has peer certificates");
    chain.first().expect("the server sent at least its own certificate").clone().into_owned()
}

/// One HTTP response, body read in full.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.text()))
    }
}

/// An HTTP/1.1 connection that sends one request at a time and reads `Content-Length` responses, so a
/// test can reuse it (keep-alive) and see exactly what the server wrote.
pub struct Http<S> {
    io: BufReader<S>,
}

fn malformed(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Http<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Self { io: BufReader::new(stream) }
    }

    /// The underlying stream.
    pub fn stream(&self) -> &S {
        self.io.get_ref()
    }

    /// Sends `method path` with `body` as JSON and reads the response.
    ///
    /// # Errors
    /// When the connection fails or closes, the response is not HTTP/1.1 with a `Content-Length`, or the
    /// exchange takes longer than [`IO_TIMEOUT`].
    pub async fn send(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<Response> {
        tokio::time::timeout(IO_TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| timed_out("the HTTP exchange"))?
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// As [`Http::send`].
    pub async fn post(&mut self, path: &str, body: &[u8]) -> io::Result<Response> {
        self.send("POST", path, body).await
    }

    async fn exchange(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<Response> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.io.write_all(head.as_bytes()).await?;
        self.io.write_all(body).await?;
        self.io.flush().await?;

        let status_line = self.line().await?;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| malformed(format!("not an HTTP/1.1 status line: {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let (name, value) =
                line.split_once(':').ok_or_else(|| malformed(format!("not an HTTP header line: {line:?}")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| malformed(format!("response without a Content-Length: {headers:?}")))?;
        let mut body = vec![0; length];
        self.io.read_exact(&mut body).await?;
        Ok(Response { status, headers, body })
    }

    async fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.io.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}
