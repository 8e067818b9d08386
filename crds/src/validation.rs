//! Validation: every rule a `Website` must satisfy, reported all at once with the field each concerns.

use std::fmt;

use crate::git::{GIT_REPO_ACCEPTED, GitRepo, check_ref};
use crate::types::{PORT_RANGE, REPLICAS_RANGE, SYNC_INTERVAL_RANGE, Website, WebsiteSpec};

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
    if let Err(e) = GitRepo::parse(&spec.git_repo) {
        violations.push(Violation::new("spec.gitRepo", format!("{e}; {GIT_REPO_ACCEPTED}")));
    }
    if let Some(Err(e)) = spec.git_ref.as_deref().map(check_ref) {
        violations.push(Violation::new("spec.ref", format!("{e}; accepted: a branch, tag or commit name")));
    }
    check_range(&mut violations, "spec.replicas", spec.replicas, REPLICAS_RANGE);
    check_range(&mut violations, "spec.port", spec.port, PORT_RANGE);
    check_range(&mut violations, "spec.syncIntervalSeconds", spec.sync_interval_seconds, SYNC_INTERVAL_RANGE);
    violations
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

    #[test]
    fn violations_display_as_field_colon_message() {
        assert_eq!(
            Violation::new("spec.port", "must be between 1 and 65535, got 0").to_string(),
            "spec.port: must be between 1 and 65535, got 0"
        );
    }
}
