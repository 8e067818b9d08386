//! Validation: every rule a `Website` must satisfy, reported all at once with the field each concerns.

use std::fmt;

use crate::git::{GIT_REPO_ACCEPTED, GitRepo, Transport, check_ref};
use crate::types::{
    CredentialsKind, GitCredentials, PORT_RANGE, REPLICAS_RANGE, SECRET_NAME_MAX_LEN, SYNC_INTERVAL_RANGE, Website,
    WebsiteSpec,
};

/// Longest accepted `metadata.name`: the Website's name is also its Service's name, a DNS-1035 label.
pub const NAME_MAX_LEN: usize = 63;

/// One broken rule: the field it concerns and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Path of the field, e.g. `spec.gitRepo`.
    pub field: String,
    /// What is wrong and what is accepted, written for the person at `kubectl`.
    pub message: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Checks a whole `Website`: its name and its spec.
pub fn validate_website(website: &Website) -> Vec<Violation> {
    let mut violations = Vec::new();
    if let Some(name) = website.metadata.name.as_deref() {
        violations.extend(validate_name(name));
    }
    violations.extend(validate(&website.spec));
    violations
}

/// Checks a spec and returns every rule it breaks, in field order. An empty result means the spec is valid.
pub fn validate(spec: &WebsiteSpec) -> Vec<Violation> {
    let mut violations = Vec::new();
    let repo = GitRepo::parse(&spec.git_repo);
    if let Err(e) = &repo {
        violations.push(Violation::new("spec.gitRepo", format!("{e}; {GIT_REPO_ACCEPTED}")));
    }
    if let Some(Err(e)) = spec.git_ref.as_deref().map(check_ref) {
        violations.push(Violation::new("spec.ref", format!("{e}; accepted: a branch, tag or commit name")));
    }
    check_range(&mut violations, "spec.replicas", spec.replicas, REPLICAS_RANGE);
    check_range(&mut violations, "spec.port", spec.port, PORT_RANGE);
    check_range(&mut violations, "spec.syncIntervalSeconds", spec.sync_interval_seconds, SYNC_INTERVAL_RANGE);
    if let Some(credentials) = &spec.credentials {
        check_credentials(&mut violations, credentials, repo.ok().map(|r| r.transport()));
    }
    violations
}

/// What a credentials reference may be used with, for the messages.
const CREDENTIALS_ACCEPTED: &str =
    "accepted: type HTTPS with an https:// remote, type SSH with an ssh:// or [user@]host:path remote";

/// Checks `spec.credentials` against the remote it is for (`None` when `spec.gitRepo` is itself refused).
fn check_credentials(violations: &mut Vec<Violation>, credentials: &GitCredentials, transport: Option<Transport>) {
    if !is_dns_subdomain(&credentials.secret_name) {
        violations.push(Violation::new(
            "spec.credentials.secretName",
            format!(
                "\"{}\" is not a Secret name; accepted: at most {SECRET_NAME_MAX_LEN} lowercase letters, digits, '-' \
                 and '.', starting and ending with a letter or digit",
                credentials.secret_name
            ),
        ));
    }
    let Some(transport) = transport else { return };
    match (transport, credentials.kind) {
        (Transport::Http | Transport::Git, _) => violations.push(Violation::new(
            "spec.credentials",
            format!(
                "credentials are never sent to an unencrypted {}:// remote, where anyone on the way could read \
                 them; use the repository's https:// or ssh:// remote, or remove spec.credentials",
                transport.scheme()
            ),
        )),
        (Transport::Https, CredentialsKind::Https) | (Transport::Ssh, CredentialsKind::Ssh) => {}
        (Transport::Https, kind @ CredentialsKind::Ssh) | (Transport::Ssh, kind @ CredentialsKind::Https) => {
            let remote = if transport == Transport::Https { "an https://" } else { "an ssh:// or [user@]host:path" };
            violations.push(Violation::new(
                "spec.credentials.type",
                format!("{kind} credentials cannot be used with {remote} remote; {CREDENTIALS_ACCEPTED}"),
            ));
        }
    }
}

/// Whether `name` is a DNS subdomain (RFC 1123), the form of a Secret's name.
fn is_dns_subdomain(name: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= SECRET_NAME_MAX_LEN
        && name.split('.').all(|label| {
            label.starts_with(alphanumeric)
                && label.ends_with(alphanumeric)
                && label.chars().all(|c| alphanumeric(c) || c == '-')
        })
}

/// Checks `metadata.name`, which also names the Website's Deployment and Service.
pub fn validate_name(name: &str) -> Option<Violation> {
    let valid = !name.is_empty()
        && name.len() <= NAME_MAX_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!valid).then(|| {
        Violation::new(
            "metadata.name",
            format!(
                "\"{name}\" cannot name the website's Service; accepted: at most {NAME_MAX_LEN} lowercase letters, \
                 digits and '-', starting with a letter and ending with a letter or digit"
            ),
        )
    })
}

/// Warnings for a valid spec: things that work but that the author should know about.
pub fn warnings(spec: &WebsiteSpec) -> Vec<String> {
    // Only these two schemes are unencrypted (schemes are lowercase in an accepted remote): skip the parse for the
    // rest, which is what almost every request has.
    if !(spec.git_repo.starts_with("http://") || spec.git_repo.starts_with("git://")) {
        return Vec::new();
    }
    match GitRepo::parse(&spec.git_repo) {
        Ok(repo) if repo.is_unencrypted() => vec![format!(
            "spec.gitRepo: {} is fetched without encryption, so its content can be altered in transit; prefer https:// or ssh://",
            repo.as_str()
        )],
        _ => Vec::new(),
    }
}

fn check_range(violations: &mut Vec<Violation>, field: &str, value: Option<i32>, range: std::ops::RangeInclusive<i32>) {
    if let Some(v) = value.filter(|v| !range.contains(v)) {
        violations
            .push(Violation::new(field, format!("must be between {} and {}, got {v}", range.start(), range.end())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ServiceType;

    fn spec(git_repo: &str) -> WebsiteSpec {
        WebsiteSpec::new(git_repo)
    }

    #[test]
    fn accepts_a_minimal_spec() {
        assert_eq!(validate(&spec("https://github.com/luksa/kubia-website-example.git")), vec![]);
    }

    #[test]
    fn accepts_a_full_spec_at_its_bounds() {
        let full = WebsiteSpec {
            git_ref: Some("main".into()),
            replicas: Some(100),
            service_type: Some(ServiceType::LoadBalancer),
            port: Some(65535),
            sync_interval_seconds: Some(5),
            ..spec("git@github.com:org/site.git")
        };
        assert_eq!(validate(&full), vec![]);
    }

    #[test]
    fn rejects_a_bad_git_repo_naming_the_field_and_what_is_accepted() {
        let v = validate(&spec("file:///etc"));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "spec.gitRepo");
        assert!(v[0].message.contains("local paths are not supported"), "{}", v[0].message);
        assert!(v[0].message.contains("https://"), "{}", v[0].message);
        assert!(v[0].message.contains("[user@]host:path"), "{}", v[0].message);
    }

    #[test]
    fn reports_every_violation_at_once_in_field_order() {
        let bad = WebsiteSpec {
            git_ref: Some("-x".into()),
            replicas: Some(0),
            port: Some(70000),
            sync_interval_seconds: Some(1),
            ..spec("")
        };
        let fields: Vec<_> = validate(&bad).into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["spec.gitRepo", "spec.ref", "spec.replicas", "spec.port", "spec.syncIntervalSeconds"]);
    }

    #[test]
    fn range_messages_give_the_bounds_and_the_value() {
        let v = validate(&WebsiteSpec { replicas: Some(101), ..spec("https://e.com/r") });
        assert_eq!(v, vec![Violation::new("spec.replicas", "must be between 1 and 100, got 101")]);
    }

    #[test]
    fn names_must_be_able_to_name_a_service() {
        for ok in ["kubia", "a", "my-site-2", &"a".repeat(63)] {
            assert_eq!(validate_name(ok), None, "{ok}");
        }
        for bad in ["", "1site", "My-Site", "site-", "site.example", "site_x", &"a".repeat(64)] {
            let v = validate_name(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(v.field, "metadata.name");
            assert!(v.message.contains("at most 63"), "{}", v.message);
        }
    }

    #[test]
    fn warns_about_unencrypted_repositories_only() {
        assert_eq!(warnings(&spec("https://e.com/r.git")), Vec::<String>::new());
        assert_eq!(warnings(&spec("file:///x")), Vec::<String>::new());
        let w = warnings(&spec("http://e.com/r.git"));
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("spec.gitRepo: http://e.com/r.git is fetched without encryption"), "{}", w[0]);
        assert_eq!(warnings(&spec("git://e.com/r.git")).len(), 1);
    }

    fn with_credentials(git_repo: &str, kind: CredentialsKind, secret_name: &str) -> WebsiteSpec {
        WebsiteSpec { credentials: Some(GitCredentials { kind, secret_name: secret_name.into() }), ..spec(git_repo) }
    }

    #[test]
    fn credentials_match_the_remotes_transport() {
        for (repo, kind) in [
            ("https://github.com/org/private.git", CredentialsKind::Https),
            ("https://user@git.example.com:8443/org/private", CredentialsKind::Https),
            ("ssh://git@github.com/org/private.git", CredentialsKind::Ssh),
            ("git@github.com:org/private.git", CredentialsKind::Ssh),
            ("github.com:org/private.git", CredentialsKind::Ssh),
        ] {
            assert_eq!(validate(&with_credentials(repo, kind, "site-creds")), vec![], "{repo} with {kind}");
        }
        for (repo, kind) in [
            ("https://github.com/org/private.git", CredentialsKind::Ssh),
            ("ssh://git@github.com/org/private.git", CredentialsKind::Https),
            ("git@github.com:org/private.git", CredentialsKind::Https),
        ] {
            let v = validate(&with_credentials(repo, kind, "site-creds"));
            assert_eq!(v.len(), 1, "{repo} with {kind}: {v:?}");
            assert_eq!(v[0].field, "spec.credentials.type");
            assert!(v[0].message.starts_with(&format!("{kind} credentials cannot be used with")), "{}", v[0].message);
            assert!(v[0].message.contains(CREDENTIALS_ACCEPTED), "{}", v[0].message);
        }
    }

    #[test]
    fn credentials_are_never_sent_to_an_unencrypted_remote() {
        for repo in ["http://git.example.com/org/private.git", "git://git.example.com/org/private.git"] {
            for kind in [CredentialsKind::Https, CredentialsKind::Ssh] {
                let v = validate(&with_credentials(repo, kind, "site-creds"));
                assert_eq!(v.len(), 1, "{repo} with {kind}: {v:?}");
                assert_eq!(v[0].field, "spec.credentials");
                assert!(v[0].message.contains("never sent to an unencrypted"), "{}", v[0].message);
            }
        }
    }

    #[test]
    fn the_secret_name_must_name_a_secret() {
        let ok = ["a", "site-creds", "creds.v2", &"a".repeat(253)];
        for name in ok {
            assert_eq!(validate(&with_credentials("https://e.com/r.git", CredentialsKind::Https, name)), vec![]);
        }
        for name in ["", "Site", "-creds", "creds-", "a..b", ".a", "a/b", "a b", &"a".repeat(254)] {
            let v = validate(&with_credentials("https://e.com/r.git", CredentialsKind::Https, name));
            assert_eq!(v.len(), 1, "{name:?}: {v:?}");
            assert_eq!(v[0].field, "spec.credentials.secretName");
            assert!(v[0].message.contains("at most 253"), "{}", v[0].message);
        }
    }

    #[test]
    fn a_refused_remote_is_reported_once_not_again_for_its_credentials() {
        let v = validate(&with_credentials("file:///etc", CredentialsKind::Https, "site-creds"));
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["spec.gitRepo"]);
    }

    #[test]
    fn violations_display_as_field_colon_message() {
        assert_eq!(
            Violation::new("spec.port", "must be between 1 and 65535, got 0").to_string(),
            "spec.port: must be between 1 and 65535, got 0"
        );
    }
}
