//! Why a command failed, and its exit code.
//!
//! | exit code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | an invalid Website (refused locally, or by the cluster), a failed wait, or another refusal by the API server (not found, forbidden, already exists) |
//! | 2 | bad usage, unreadable input (a missing file, a document that is not YAML), or a cluster that cannot be reached or configured |

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The Website breaks the rules; the message lists every violation.
    #[error("{0}")]
    Invalid(String),
    /// The API server refused the request.
    #[error("{0}")]
    Refused(String),
    /// `wait` gave up.
    #[error("{0}")]
    WaitFailed(String),
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// A file or a document could not be read.
    #[error("{0}")]
    Input(String),
    /// The cluster could not be configured or reached.
    #[error("{0}")]
    Unreachable(String),
}

impl Failure {
    /// The process's exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_) | Self::Refused(_) | Self::WaitFailed(_) => 1,
            Self::Usage(_) | Self::Input(_) | Self::Unreachable(_) => 2,
        }
    }

    /// A failed API call: a refusal when the API server answered, unreachable when it did not.
    pub fn from_kube(action: &str, error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => {
                let message = if status.message.is_empty() { status.reason.clone() } else { status.message.clone() };
                Self::Refused(format!("failed to {action}: {message}"))
            }
            other => Self::Unreachable(format!("failed to {action}: the API server could not be reached: {other}")),
        }
    }
}

/// Result of a command.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_exit_1_and_connection_failures_exit_2() {
        let status = kube::core::Status::failure("websites \"x\" not found", "NotFound").with_code(404);
        let refused = Failure::from_kube("get Website x", kube::Error::Api(Box::new(status)));
        assert_eq!(
            (refused.exit_code(), refused.to_string().as_str()),
            (1, "failed to get Website x: websites \"x\" not found")
        );
        let unreachable = Failure::from_kube("list Websites", kube::Error::LinesCodecMaxLineLengthExceeded);
        assert_eq!(unreachable.exit_code(), 2);
        assert!(unreachable.to_string().contains("could not be reached"), "{unreachable}");
        assert_eq!(Failure::Usage("x".into()).exit_code(), 2);
        assert_eq!(Failure::Input("x".into()).exit_code(), 2);
        assert_eq!(Failure::Invalid("x".into()).exit_code(), 1);
        assert_eq!(Failure::WaitFailed("x".into()).exit_code(), 1);
    }
}
