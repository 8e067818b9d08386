//! The serving certificate, reloaded when its files change, and the rustls server configuration: shared with the
//! project's other servers, in [`website_certs::serving`].

pub use website_certs::serving::{
    CertificateFiles, ReloadingCertResolver, ServingError, certified_key, crypto_provider, server_config,
};
