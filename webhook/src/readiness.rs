//! Whether the webhook should get traffic: `/readyz` answers 200 only then.
//!
//! The serving certificate is always loaded once the server runs ([`crate::server::Application::build`] fails
//! otherwise). With certificates from files (cert-manager, provided), that is all readiness needs. With
//! self-managed certificates, the API server must also trust the certificate being served: the keeper marks the
//! webhook trusted once the CA that issued it is in the `caBundle` of both webhook configurations, and not
//! trusted while it is not (a wiped `caBundle`, say).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared readiness of the webhook; clones share one state.
#[derive(Clone, Debug)]
pub struct Readiness {
    trusted: Arc<AtomicBool>,
}

impl Readiness {
    /// Ready from the start: certificates come from files the operator keeps trusted.
    pub fn trusted() -> Self {
        Self { trusted: Arc::new(AtomicBool::new(true)) }
    }

    /// Not ready until [`Readiness::set_trusted`] says the API server trusts the served certificate.
    pub fn awaiting_trust() -> Self {
        Self { trusted: Arc::new(AtomicBool::new(false)) }
    }

    /// Records whether the API server trusts the certificate being served.
    pub fn set_trusted(&self, trusted: bool) {
        self.trusted.store(trusted, Ordering::Release);
    }

    /// Whether the webhook is ready for traffic.
    pub fn is_ready(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_state() {
        let readiness = Readiness::awaiting_trust();
        let keeper = readiness.clone();
        assert!(!readiness.is_ready());
        keeper.set_trusted(true);
        assert!(readiness.is_ready());
        keeper.set_trusted(false);
        assert!(!readiness.is_ready());
        assert!(Readiness::trusted().is_ready());
    }
}
