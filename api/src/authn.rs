//! Who is asking: the aggregation model's request-header authentication.
//!
//! The main API server authenticates the user, then proxies the request here over TLS with its front-proxy client
//! certificate, and names the user in `X-Remote-User`, `X-Remote-Group` and `X-Remote-Extra-*` headers. Those
//! headers are believed only on a connection whose client certificate
//! - was signed by the request-header CA that the API server publishes in
//!   `kube-system/extension-apiserver-authentication` (checked by the TLS handshake, with [`FrontProxyVerifier`]),
//! - and has a common name among the allowed names published there (checked per request, by [`authenticate`]).
//!
//! A connection without a client certificate is accepted, so that it can be answered with a 401 that says why; a
//! certificate signed by any other CA fails the handshake. The CA and the names are read again periodically, so a
//! rotation of the front-proxy CA reaches new connections without a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use actix_web::http::header::HeaderMap;
use k8s_openapi::api::core::v1::ConfigMap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// Namespace and name of the ConfigMap in which the API server publishes its request-header settings.
pub const AUTHENTICATION_CONFIG_MAP: (&str, &str) = ("kube-system", "extension-apiserver-authentication");

/// The request-header settings of the API server, as published in [`AUTHENTICATION_CONFIG_MAP`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    /// The CA that signs the front-proxy client certificate (PEM).
    pub client_ca_pem: String,
    /// Common names a front-proxy certificate may have; empty: any certificate the CA signed.
    pub allowed_names: Vec<String>,
    /// Headers naming the user, the first present wins (`X-Remote-User`).
    pub username_headers: Vec<String>,
    /// Headers naming the groups, every value of each (`X-Remote-Group`).
    pub group_headers: Vec<String>,
    /// Prefixes of the headers carrying extra attributes (`X-Remote-Extra-`).
    pub extra_header_prefixes: Vec<String>,
}

/// Why the request-header settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key is missing from the ConfigMap.
    #[error(
        "{key} is missing from kube-system/extension-apiserver-authentication: is the API server's aggregation layer \
         on (--requestheader-client-ca-file)?"
    )]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A key does not hold what it should.
    #[error("{key} in kube-system/extension-apiserver-authentication is not {expected}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What it should hold.
        expected: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl RequestHeaderConfig {
    /// Reads the settings from the API server's ConfigMap.
    ///
    /// # Errors
    /// When the CA is missing or holds no certificate, or a list is not a JSON array of strings.
    pub fn from_config_map(config_map: &ConfigMap) -> Result<Self, ConfigError> {
        let data = config_map.data.clone().unwrap_or_default();
        let list = |key: &'static str, default: &str| -> Result<Vec<String>, ConfigError> {
            match data.get(key) {
                None => Ok(if default.is_empty() { Vec::new() } else { vec![default.to_owned()] }),
                Some(text) => serde_json::from_str::<Vec<String>>(text).map_err(|e| ConfigError::Invalid {
                    key,
                    expected: "a JSON array of strings",
                    reason: e.to_string(),
                }),
            }
        };
        let key = "requestheader-client-ca-file";
        let client_ca_pem = data.get(key).cloned().ok_or(ConfigError::Missing { key })?;
        let config = Self {
            client_ca_pem,
            allowed_names: list("requestheader-allowed-names", "")?,
            username_headers: list("requestheader-username-headers", "X-Remote-User")?,
            group_headers: list("requestheader-group-headers", "X-Remote-Group")?,
            extra_header_prefixes: list("requestheader-extra-headers-prefix", "X-Remote-Extra-")?,
        };
        config.roots()?;
        Ok(config)
    }

    fn roots(&self) -> Result<RootCertStore, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            key: "requestheader-client-ca-file",
            expected: "a PEM CA certificate",
            reason,
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.client_ca_pem.as_bytes()) {
            roots.add(cert.map_err(|e| invalid(e.to_string()))?).map_err(|e| invalid(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(invalid("no CERTIFICATE block".into()));
        }
        Ok(roots)
    }

    /// A verifier of client certificates against this CA, which also lets in clients without one.
    ///
    /// # Errors
    /// When the CA does not load.
    pub fn verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, ConfigError> {
        WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), website_certs::serving::crypto_provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| ConfigError::Invalid {
                key: "requestheader-client-ca-file",
                expected: "a CA certificate rustls accepts",
                reason: e.to_string(),
            })
    }
}

/// The request-header settings in force, and a verifier of client certificates that always uses the newest CA.
#[derive(Debug)]
pub struct FrontProxy {
    current: RwLock<(Arc<RequestHeaderConfig>, Arc<dyn ClientCertVerifier>)>,
}

impl FrontProxy {
    /// The settings of `config`.
    ///
    /// # Errors
    /// When its CA does not load.
    pub fn new(config: RequestHeaderConfig) -> Result<Self, ConfigError> {
        let verifier = config.verifier()?;
        Ok(Self { current: RwLock::new((Arc::new(config), verifier)) })
    }

    /// The settings in force.
    pub fn config(&self) -> Arc<RequestHeaderConfig> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).0.clone()
    }

    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
    }

    /// Puts `config` in force for new connections; returns whether it changed.
    ///
    /// # Errors
    /// When its CA does not load; the settings in force then stay.
    pub fn update(&self, config: RequestHeaderConfig) -> Result<bool, ConfigError> {
        if *self.config() == config {
            return Ok(false);
        }
        let verifier = config.verifier()?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (Arc::new(config), verifier);
        Ok(true)
    }
}

/// The TLS side of [`FrontProxy`]: checks a client certificate against the request-header CA in force.
#[derive(Debug)]
pub struct FrontProxyVerifier(pub Arc<FrontProxy>);

impl ClientCertVerifier for FrontProxyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // A client without a certificate gets a 401 that says why, rather than a failed handshake.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The CA can change; without hints, a client offers the certificate it has, and the check decides.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verifier().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.verifier().supported_verify_schemes()
    }
}

/// What the TLS handshake established about a connection's client, kept with the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// The common name of the client certificate the handshake verified; `None` without a certificate.
    pub verified_common_name: Option<String>,
    /// Whether a verified certificate was presented.
    pub verified: bool,
}

impl Peer {
    /// The peer of a connection whose verified chain is `chain` (leaf first), or that presented none.
    pub fn from_chain(chain: Option<&[CertificateDer<'_>]>) -> Self {
        let Some(leaf) = chain.and_then(<[_]>::first) else {
            return Self::default();
        };
        let common_name = x509_parser::parse_x509_certificate(leaf).ok().and_then(|(_, cert)| {
            cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned)
        });
        Self { verified_common_name: common_name, verified: true }
    }
}

/// The user a request is made for, as the main API server authenticated it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserInfo {
    /// The user name.
    pub username: String,
    /// Its groups, in the order given.
    pub groups: Vec<String>,
    /// Extra attributes (keys lower-case and decoded).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The aggregator, for a user.
    User(UserInfo),
    /// The aggregator itself, naming no user: its availability checks and OpenAPI downloads.
    Aggregator,
}

/// Why a request is not authenticated: the message of the 401.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// No verified client certificate.
    #[error(
        "no client certificate: website-api answers only the Kubernetes API server's aggregation layer, which \
         presents its front-proxy client certificate; send the request to the API server instead"
    )]
    NoCertificate,
    /// A verified certificate whose name is not allowed.
    #[error(
        "the client certificate's common name {0:?} is not among the request-header allowed names of \
         kube-system/extension-apiserver-authentication"
    )]
    NameNotAllowed(String),
}

/// Authenticates a request that came on a connection with `peer` and carries `headers`.
///
/// # Errors
/// When the connection is not the aggregator's: then no header is looked at.
pub fn authenticate(config: &RequestHeaderConfig, peer: &Peer, headers: &HeaderMap) -> Result<Caller, AuthnError> {
    if !peer.verified {
        return Err(AuthnError::NoCertificate);
    }
    if !config.allowed_names.is_empty() {
        let name = peer.verified_common_name.clone().unwrap_or_default();
        if !config.allowed_names.contains(&name) {
            return Err(AuthnError::NameNotAllowed(name));
        }
    }
    let value = |v: &actix_web::http::header::HeaderValue| v.to_str().ok().map(str::to_owned);
    let Some(username) =
        config.username_headers.iter().find_map(|h| headers.get(h.as_str()).and_then(value)).filter(|u| !u.is_empty())
    else {
        return Ok(Caller::Aggregator);
    };
    let groups = config.group_headers.iter().flat_map(|h| headers.get_all(h.as_str()).filter_map(value)).collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, v) in headers {
        let name = name.as_str();
        for prefix in &config.extra_header_prefixes {
            let prefix = prefix.to_ascii_lowercase();
            if let Some(key) = name.strip_prefix(prefix.as_str()).filter(|k| !k.is_empty())
                && let Some(v) = value(v)
            {
                let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy().to_lowercase();
                extra.entry(key).or_default().push(v);
            }
        }
    }
    Ok(Caller::User(UserInfo { username, groups, extra }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn config() -> RequestHeaderConfig {
        RequestHeaderConfig {
            client_ca_pem: String::new(),
            allowed_names: vec!["front-proxy-client".into()],
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_header_prefixes: vec!["X-Remote-Extra-".into()],
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("value"));
        }
        map
    }

    fn proxy(name: &str) -> Peer {
        Peer { verified_common_name: Some(name.into()), verified: true }
    }

    #[test]
    fn headers_on_a_connection_without_a_verified_certificate_are_never_read() {
        let forged = headers(&[("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")]);
        assert_eq!(authenticate(&config(), &Peer::default(), &forged), Err(AuthnError::NoCertificate));
        // Even a certificate name the allowed names hold does not count without a verified chain.
        let unverified = Peer { verified_common_name: Some("front-proxy-client".into()), verified: false };
        assert_eq!(authenticate(&config(), &unverified, &forged), Err(AuthnError::NoCertificate));
    }

    #[test]
    fn a_verified_certificate_with_a_name_not_allowed_is_refused() {
        let h = headers(&[("X-Remote-User", "admin")]);
        assert_eq!(
            authenticate(&config(), &proxy("someone-else"), &h),
            Err(AuthnError::NameNotAllowed("someone-else".into()))
        );
        // No allowed names: any certificate the CA signed.
        let open = RequestHeaderConfig { allowed_names: vec![], ..config() };
        assert!(matches!(authenticate(&open, &proxy("someone-else"), &h), Ok(Caller::User(_))));
    }

    #[test]
    fn the_user_groups_and_extra_come_from_the_configured_headers() {
        let h = headers(&[
            ("X-Remote-User", "alice"),
            ("X-Remote-Group", "dev"),
            ("X-Remote-Group", "system:authenticated"),
            ("X-Remote-Extra-Scopes", "a"),
            ("X-Remote-Extra-Scopes", "b"),
            ("X-Remote-Extra-Example.com%2Fteam", "web"),
            ("X-Other-User", "mallory"),
        ]);
        let Ok(Caller::User(user)) = authenticate(&config(), &proxy("front-proxy-client"), &h) else {
            panic!("not a user");
        };
        assert_eq!(user.username, "alice");
        assert_eq!(user.groups, ["dev", "system:authenticated"]);
        assert_eq!(user.extra.get("scopes"), Some(&vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(user.extra.get("example.com/team"), Some(&vec!["web".to_owned()]));
        assert_eq!(user.extra.len(), 2);
    }

    #[test]
    fn the_aggregator_without_a_user_header_is_the_aggregator() {
        let h = headers(&[("X-Remote-Group", "system:masters")]);
        assert_eq!(authenticate(&config(), &proxy("front-proxy-client"), &h), Ok(Caller::Aggregator));
    }

    #[test]
    fn the_config_map_is_read_with_the_api_servers_defaults_and_a_bad_one_is_explained() {
        let ca = website_certs::CertificateAuthority::generate("front-proxy-ca", std::time::Duration::from_secs(3600))
            .expect("ca");
        let mut cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("requestheader-client-ca-file".to_owned(), ca.cert_pem().to_owned()),
                ("requestheader-allowed-names".to_owned(), r#"["front-proxy-client"]"#.to_owned()),
            ])),
            ..ConfigMap::default()
        };
        let config = RequestHeaderConfig::from_config_map(&cm).expect("reads");
        assert_eq!(config.allowed_names, ["front-proxy-client"]);
        assert_eq!(config.username_headers, ["X-Remote-User"]);
        assert!(config.verifier().is_ok());

        cm.data = Some(BTreeMap::from([("requestheader-client-ca-file".to_owned(), "not PEM".to_owned())]));
        let error = RequestHeaderConfig::from_config_map(&cm).expect_err("no CA").to_string();
        assert!(error.contains("requestheader-client-ca-file") && error.contains("PEM"), "{error}");
        cm.data = None;
        let error = RequestHeaderConfig::from_config_map(&cm).expect_err("missing").to_string();
        assert!(error.contains("aggregation layer"), "{error}");
    }
}
