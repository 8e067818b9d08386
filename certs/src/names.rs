//! Subject alternative names and their validation.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::{Error, Result};

/// Longest DNS name accepted, in characters (RFC 1123 / Kubernetes DNS-1123 subdomain).
pub const MAX_DNS_NAME_LEN: usize = 253;

/// Longest DNS label accepted, in characters.
pub const MAX_DNS_LABEL_LEN: usize = 63;

/// The cluster domain used for the fully-qualified Service name.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// A subject alternative name of a serving certificate: a DNS name or an IP address.
///
/// Construct DNS names with [`SubjectName::dns`] (or [`str::parse`]) to validate them early;
/// [`CertificateAuthority::issue_serving`](crate::CertificateAuthority::issue_serving) validates
/// every [`SubjectName::Dns`] again, so a hand-built variant cannot slip through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectName {
    /// A DNS name such as `website-webhook.website-system.svc`.
    Dns(String),
    /// An IP address (v4 or v6).
    Ip(IpAddr),
}

impl SubjectName {
    /// A validated DNS subject name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDnsName`] if `name` is not a lowercase RFC 1123 DNS name (see
    /// [`validate_dns_name`]).
    pub fn dns(name: &str) -> Result<Self> {
        validate_dns_name(name)?;
        Ok(Self::Dns(name.to_owned()))
    }
}

impl From<IpAddr> for SubjectName {
    fn from(ip: IpAddr) -> Self {
        Self::Ip(ip)
    }
}

impl FromStr for SubjectName {
    type Err = Error;

    /// Parses an IP address if `s` is one, a validated DNS name otherwise.
    fn from_str(s: &str) -> Result<Self> {
        match s.parse::<IpAddr>() {
            Ok(ip) => Ok(Self::Ip(ip)),
            Err(_) => Self::dns(s),
        }
    }
}

impl fmt::Display for SubjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => f.write_str(name),
            Self::Ip(ip) => ip.fmt(f),
        }
    }
}

/// The DNS names under which a Service is reachable from inside the cluster, in this order:
/// `svc`, `svc.ns`, `svc.ns.svc` and `svc.ns.svc.cluster.local`.
///
/// The kube-apiserver calls a webhook's Service as `svc.ns.svc`, so that name must be in the
/// serving certificate; the others cover in-cluster clients using the shorter or fully-qualified
/// forms.
///
/// # Errors
///
/// [`Error::InvalidServiceName`] if `service` is not an RFC 1035 label (as Kubernetes requires
/// for Service names) and [`Error::InvalidNamespace`] if `namespace` is not an RFC 1123 label.
///
/// # Examples
///
/// ```
/// let names = website_certs::service_dns_names("website-webhook", "website-system")?;
/// assert_eq!(
///     names,
///     [
///         "website-webhook",
///         "website-webhook.website-system",
///         "website-webhook.website-system.svc",
///         "website-webhook.website-system.svc.cluster.local",
///     ]
/// );
/// # Ok::<(), website_certs::Error>(())
/// ```
pub fn service_dns_names(service: &str, namespace: &str) -> Result<Vec<String>> {
    check_label(service, LabelKind::Rfc1035)
        .map_err(|reason| Error::InvalidServiceName { name: service.to_owned(), reason })?;
    check_label(namespace, LabelKind::Rfc1123)
        .map_err(|reason| Error::InvalidNamespace { name: namespace.to_owned(), reason })?;
    Ok(vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{CLUSTER_DOMAIN}"),
    ])
}

/// Checks that `name` is usable as a DNS subject alternative name: a lowercase RFC 1123 DNS
/// name (what Kubernetes calls a DNS-1123 subdomain), without wildcards or a trailing dot, and
/// not an IP address (those belong in [`SubjectName::Ip`]).
///
/// # Errors
///
/// [`Error::InvalidDnsName`], whose reason says what is wrong.
pub fn validate_dns_name(name: &str) -> Result<()> {
    check_dns_name(name).map_err(|reason| Error::InvalidDnsName { name: name.to_owned(), reason })
}

fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err("it is an IP address; give it as an IP address, not a DNS name".to_owned());
    }
    if name.contains('*') {
        return Err("wildcard names are not supported".to_owned());
    }
    if name.ends_with('.') {
        return Err("it must not end with '.'".to_owned());
    }
    let len = name.chars().count();
    if len > MAX_DNS_NAME_LEN {
        return Err(format!("it is {len} characters long; at most {MAX_DNS_NAME_LEN} are allowed"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it contains an empty label (a leading '.' or '..')".to_owned());
        }
        check_label(label, LabelKind::Rfc1123).map_err(|reason| format!("label {label:?}: {reason}"))?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum LabelKind {
    /// Letters, digits and '-', starting and ending with a letter or digit.
    Rfc1123,
    /// Like RFC 1123, but starting with a letter.
    Rfc1035,
}

fn check_label(label: &str, kind: LabelKind) -> Result<(), String> {
    if label.is_empty() {
        return Err("it is empty".to_owned());
    }
    if let Some(c) = label.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-')) {
        return Err(if c.is_ascii_uppercase() {
            format!("it contains the uppercase character {c:?}; only lowercase is allowed")
        } else {
            format!("it contains the invalid character {c:?}")
        });
    }
    // Only ASCII is left, so bytes are characters.
    if label.len() > MAX_DNS_LABEL_LEN {
        return Err(format!("it is {} characters long; at most {MAX_DNS_LABEL_LEN} are allowed", label.len()));
    }
    let starts_ok = match kind {
        LabelKind::Rfc1123 => !label.starts_with('-'),
        LabelKind::Rfc1035 => label.starts_with(|c: char| c.is_ascii_lowercase()),
    };
    if !starts_ok {
        return Err(match kind {
            LabelKind::Rfc1123 => "it must start with a letter or digit",
            LabelKind::Rfc1035 => "it must start with a letter",
        }
        .to_owned());
    }
    if label.ends_with('-') {
        return Err("it must end with a letter or digit".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL_63: &str = "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij123";
    const LABEL_64: &str = "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij1234";

    /// A syntactically valid DNS name of exactly `len` characters, built from 63-character labels.
    fn name_of_len(len: usize) -> String {
        let mut name = String::new();
        while name.len() < len {
            if !name.is_empty() {
                name.push('.');
            }
            let remaining = len - name.len();
            name.push_str(&LABEL_63[..remaining.min(63)]);
        }
        name
    }

    #[test]
    fn label_fixtures_have_the_intended_lengths() {
        assert_eq!(LABEL_63.len(), 63);
        assert_eq!(LABEL_64.len(), 64);
        assert_eq!(name_of_len(253).len(), 253);
        assert_eq!(name_of_len(254).len(), 254);
    }

    #[test]
    fn dns_names_accept_and_reject_table() {
        let long_ok = name_of_len(253);
        let too_long = name_of_len(254);
        let label_64 = format!("{LABEL_64}.example.com");
        let label_63 = format!("{LABEL_63}.example.com");
        // (name, accepted, substring of the reason when rejected)
        let cases: &[(&str, bool, &str)] = &[
            ("localhost", true, ""),
            ("webhook", true, ""),
            ("website-webhook.website-system.svc", true, ""),
            ("website-webhook.website-system.svc.cluster.local", true, ""),
            ("a", true, ""),
            ("0", true, ""),
            ("1webhook.example", true, ""),
            ("a-b.c-d", true, ""),
            ("xn--bcher-kva.example", true, ""),
            ("1.2.3", true, ""),
            (&label_63, true, ""),
            (&long_ok, true, ""),
            ("", false, "it is empty"),
            ("10.0.0.1", false, "it is an IP address"),
            ("::1", false, "it is an IP address"),
            ("*.example.com", false, "wildcard"),
            ("example.com.", false, "must not end with '.'"),
            (".example.com", false, "empty label"),
            ("example..com", false, "empty label"),
            ("Example.com", false, "uppercase character 'E'"),
            ("exa_mple.com", false, "invalid character '_'"),
            ("exa mple.com", false, "invalid character ' '"),
            ("bücher.example", false, "invalid character 'ü'"),
            ("-example.com", false, "must start with a letter or digit"),
            ("example-.com", false, "must end with a letter or digit"),
            ("example.com-", false, "must end with a letter or digit"),
            (&label_64, false, "64 characters long"),
            (&too_long, false, "254 characters long"),
        ];
        for &(name, accepted, reason) in cases {
            match (validate_dns_name(name), accepted) {
                (Ok(()), true) => {}
                (Ok(()), false) => panic!("{name:?} was accepted, expected rejection ({reason})"),
                (Err(err), true) => panic!("{name:?} was rejected: {err}"),
                (Err(err), false) => {
                    let Error::InvalidDnsName { name: rejected, reason: got } = &err else {
                        panic!("{name:?}: unexpected error {err:?}");
                    };
                    assert_eq!(rejected, name);
                    assert!(got.contains(reason), "{name:?}: reason {got:?} lacks {reason:?}");
                    let message = err.to_string();
                    assert!(message.starts_with("failed to validate DNS name"), "{message}");
                    assert!(message.contains("lowercase RFC 1123"), "{message}");
                }
            }
        }
    }

    #[test]
    fn service_and_namespace_accept_and_reject_table() {
        /// `Ok(())`, or `Err((which name is rejected, substring of the reason))`.
        type Expected = Result<(), (&'static str, &'static str)>;
        let cases: &[(&str, &str, Expected)] = &[
            ("website-webhook", "website-system", Ok(())),
            ("w", "default", Ok(())),
            ("svc1", "1ns", Ok(())),
            (LABEL_63, LABEL_63, Ok(())),
            ("", "default", Err(("service", "it is empty"))),
            ("1svc", "default", Err(("service", "must start with a letter"))),
            ("-svc", "default", Err(("service", "must start with a letter"))),
            ("svc-", "default", Err(("service", "must end with a letter or digit"))),
            ("Svc", "default", Err(("service", "uppercase"))),
            ("svc.x", "default", Err(("service", "invalid character '.'"))),
            (LABEL_64, "default", Err(("service", "64 characters long"))),
            ("svc", "", Err(("namespace", "it is empty"))),
            ("svc", "-ns", Err(("namespace", "must start with a letter or digit"))),
            ("svc", "ns-", Err(("namespace", "must end with a letter or digit"))),
            ("svc", "kube.system", Err(("namespace", "invalid character '.'"))),
            ("svc", "Default", Err(("namespace", "uppercase"))),
            ("svc", LABEL_64, Err(("namespace", "64 characters long"))),
        ];
        for (service, namespace, expected) in cases {
            let result = service_dns_names(service, namespace);
            match (result, expected) {
                (Ok(names), Ok(())) => assert_eq!(names.len(), 4),
                (Ok(names), Err(_)) => {
                    panic!("{service:?}/{namespace:?} accepted as {names:?}, expected rejection")
                }
                (Err(err), Ok(())) => panic!("{service:?}/{namespace:?} rejected: {err}"),
                (Err(err), Err((which, reason))) => {
                    let (rejected, got, prefix) = match &err {
                        Error::InvalidServiceName { name, reason } => (name, reason, "service"),
                        Error::InvalidNamespace { name, reason } => (name, reason, "namespace"),
                        other => panic!("unexpected error {other:?}"),
                    };
                    assert_eq!(prefix, *which, "{service:?}/{namespace:?}: {err}");
                    let expected_name = if *which == "service" { service } else { namespace };
                    assert_eq!(rejected, expected_name);
                    assert!(got.contains(reason), "{got:?} lacks {reason:?}");
                }
            }
        }
    }

    #[test]
    fn service_dns_names_are_the_four_in_cluster_forms() -> Result<()> {
        assert_eq!(
            service_dns_names("website-webhook", "website-system")?,
            [
                "website-webhook",
                "website-webhook.website-system",
                "website-webhook.website-system.svc",
                "website-webhook.website-system.svc.cluster.local",
            ]
        );
        // The longest possible names still make valid DNS names.
        for name in service_dns_names(LABEL_63, LABEL_63)? {
            validate_dns_name(&name)?;
        }
        Ok(())
    }

    #[test]
    fn error_messages_say_what_is_accepted() {
        let Err(err) = service_dns_names("1svc", "default") else {
            panic!("1svc must be rejected");
        };
        assert_eq!(
            err.to_string(),
            "failed to validate service name \"1svc\": it must start with a letter; expected a \
             Kubernetes Service name, an RFC 1035 label (1-63 characters of a-z, 0-9 and '-', \
             starting with a letter and ending with a letter or digit)"
        );
        let Err(err) = service_dns_names("svc", "kube_system") else {
            panic!("kube_system must be rejected");
        };
        assert!(
            err.to_string().starts_with(
                "failed to validate namespace \"kube_system\": it contains the invalid character \
                 '_'; expected a Kubernetes namespace name, an RFC 1123 label"
            ),
            "{err}"
        );
    }

    #[test]
    fn subject_names_parse_ips_and_validated_dns_names() -> Result<()> {
        assert_eq!("10.96.0.1".parse::<SubjectName>()?, SubjectName::Ip(IpAddr::from([10, 96, 0, 1])));
        assert_eq!(
            "fd00::1".parse::<SubjectName>()?,
            SubjectName::Ip("fd00::1".parse().map_err(|_| Error::NoSubjectNames)?)
        );
        assert_eq!("webhook.default.svc".parse::<SubjectName>()?, SubjectName::Dns("webhook.default.svc".to_owned()));
        assert!(matches!("Webhook".parse::<SubjectName>(), Err(Error::InvalidDnsName { .. })));
        assert_eq!(SubjectName::dns("a.b")?.to_string(), "a.b");
        assert_eq!(SubjectName::from(IpAddr::from([127, 0, 0, 1])).to_string(), "127.0.0.1");
        Ok(())
    }
}
