//! `spec.gitRepo` and `spec.ref`: what a git remote and a git revision may look like.
//!
//! The rules keep the git-sync sidecar safe from input that git, ssh or curl would treat as something other
//! than the remote repository it appears to name: local paths, `file://`, transport helpers (`ext::`),
//! options (a part that starts with `-`), hosts hidden behind percent-encoding, brackets or invisible
//! characters, and credentials, which do not belong in a spec that every reader of the namespace can see.
//!
//! A remote is one of
//! - a URL `scheme://[user@]host[:port]/path`, the scheme one of [`GIT_SCHEMES`], in lowercase;
//! - scp-like `[user@]host:path`, fetched over ssh.
//!
//! The host is a name of ASCII letters, digits, `-`, `.` and `_`, an IPv4 address, or an IPv6 address in
//! brackets. The parser is written by hand to model git rather than a browser: git percent-decodes `ssh://`
//! and `git://` URLs before it splits them, hands `user@host` to ssh as one argument, and reads a host whose
//! last label is a number as an IPv4 address in any of the spellings `inet_aton` accepts.
//!
//! Refusing loopback, unspecified and link-local hosts is best effort: a host name can still resolve to
//! such an address. The real guard is a NetworkPolicy that limits the pods' egress.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use crate::types::{GIT_REPO_MAX_LEN, REF_MAX_LEN};

/// What `spec.gitRepo` accepts, appended to every rejection so the author knows what to write instead.
pub const GIT_REPO_ACCEPTED: &str =
    "accepted: an https://, http://, ssh:// or git:// URL with a host and a path, or scp-like [user@]host:path";

/// Schemes accepted in URL-form repositories.
pub const GIT_SCHEMES: [&str; 4] = ["https", "http", "ssh", "git"];

/// How user names that are access tokens begin: GitHub's personal, OAuth, user-to-server, server-to-server,
/// refresh and fine-grained tokens, and GitLab's personal access tokens.
pub const TOKEN_PREFIXES: [&str; 7] = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-"];

/// Characters that show as nothing or reorder the text around them, so that a remote would read differently
/// from what git fetches: every Unicode format character (category Cf), invisible fillers and variation
/// selectors. Inclusive ranges.
const INVISIBLE: [(char, char); 28] = [
    ('\u{00AD}', '\u{00AD}'),   // soft hyphen
    ('\u{034F}', '\u{034F}'),   // combining grapheme joiner
    ('\u{0600}', '\u{0605}'),   // Arabic number signs
    ('\u{061C}', '\u{061C}'),   // Arabic letter mark
    ('\u{06DD}', '\u{06DD}'),   // Arabic end of ayah
    ('\u{070F}', '\u{070F}'),   // Syriac abbreviation mark
    ('\u{0890}', '\u{0891}'),   // Arabic pound and piastre marks above
    ('\u{08E2}', '\u{08E2}'),   // Arabic disputed end of ayah
    ('\u{115F}', '\u{1160}'),   // Hangul choseong and jungseong fillers
    ('\u{17B4}', '\u{17B5}'),   // Khmer inherent vowels
    ('\u{180B}', '\u{180F}'),   // Mongolian variation selectors and vowel separator
    ('\u{200B}', '\u{200F}'),   // zero-width space, non-joiner, joiner; left-to-right and right-to-left marks
    ('\u{202A}', '\u{202E}'),   // bidirectional embeddings and overrides
    ('\u{2060}', '\u{206F}'),   // word joiner, invisible operators, bidirectional isolates, deprecated formats
    ('\u{2800}', '\u{2800}'),   // braille pattern blank
    ('\u{3164}', '\u{3164}'),   // Hangul filler
    ('\u{FE00}', '\u{FE0F}'),   // variation selectors
    ('\u{FEFF}', '\u{FEFF}'),   // zero-width no-break space (byte order mark)
    ('\u{FFA0}', '\u{FFA0}'),   // halfwidth Hangul filler
    ('\u{FFF9}', '\u{FFFB}'),   // interlinear annotation
    ('\u{110BD}', '\u{110BD}'), // Kaithi number sign
    ('\u{110CD}', '\u{110CD}'), // Kaithi number sign above
    ('\u{13430}', '\u{1343F}'), // Egyptian hieroglyph format controls
    ('\u{1BCA0}', '\u{1BCA3}'), // shorthand format controls
    ('\u{1D173}', '\u{1D17A}'), // musical symbol format controls
    ('\u{E0001}', '\u{E0001}'), // language tag
    ('\u{E0020}', '\u{E007F}'), // tag characters
    ('\u{E0100}', '\u{E01EF}'), // variation selectors supplement
];

/// A validated git remote and its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitRepo {
    raw: String,
    transport: Transport,
    scp_like: bool,
    /// Where the parts are in `raw`.
    user: Option<Range<usize>>,
    host: Range<usize>,
    ip: Option<IpAddr>,
    port: Option<u16>,
    path: Range<usize>,
}

/// Where `part`, a slice of `whole`, starts and ends in it.
fn span(whole: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    debug_assert!(start <= whole.len() && start + part.len() <= whole.len(), "{part:?} is not part of {whole:?}");
    start..start + part.len()
}

/// How a [`GitRepo`] is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `https://`
    Https,
    /// `http://` (unencrypted).
    Http,
    /// `ssh://` or scp-like `user@host:path`.
    Ssh,
    /// `git://` (unencrypted, unauthenticated).
    Git,
}

impl Transport {
    /// The URL scheme of the transport, without `://`.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
            Self::Ssh => "ssh",
            Self::Git => "git",
        }
    }
}

/// Why an address cannot be a repository's host: it names the pod itself or its node's local link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressKind {
    /// `localhost`, 127.0.0.0/8 or `::1`: the pod itself.
    Loopback,
    /// 0.0.0.0/8 or `::`, which reach the pod itself too.
    Unspecified,
    /// 169.254.0.0/16 or fe80::/10, where cloud metadata services answer.
    LinkLocal,
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loopback => "a loopback address, which would reach the pod itself",
            Self::Unspecified => "an unspecified address, which would reach the pod itself",
            Self::LinkLocal => "a link-local address, where cloud metadata services answer",
        })
    }
}

/// Why a string is not an accepted git remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitRepoError {
    /// Empty or only white space.
    Empty,
    /// Longer than [`GIT_REPO_MAX_LEN`].
    TooLong(usize),
    /// Contains white space or a control character.
    WhitespaceOrControl,
    /// Starts with `-`, which git would read as an option.
    LeadingDash,
    /// Contains an invisible or text-direction character (see the module's table), as written or
    /// percent-encoded.
    InvisibleCharacter(char),
    /// Contains a backslash.
    Backslash,
    /// A `%` that is not followed by two hex digits.
    MalformedPercentEncoding,
    /// A percent-encoded control character such as `%0A`, as written.
    EncodedControlCharacter(String),
    /// A query string or a fragment: the `?` or `#` found.
    QueryOrFragment(char),
    /// A `transport::address` remote such as `ext::sh -c ...`.
    TransportHelper(String),
    /// A URL scheme other than those of [`GIT_SCHEMES`].
    UnsupportedScheme(String),
    /// One of [`GIT_SCHEMES`] written with capitals, as written.
    UppercaseScheme(String),
    /// A path on the local file system.
    LocalPath,
    /// A `%` in the user, host or port.
    PercentInAuthority,
    /// More than one `@` before the host.
    MultipleAt,
    /// An `@` with nothing before it.
    EmptyUser,
    /// A URL with a password in its user-info part, or a scp-like remote that looks like one.
    EmbeddedPassword,
    /// A user name that looks like an access token; the token prefix found.
    AccessToken(&'static str),
    /// A user name that starts with `-`, which ssh would read as an option.
    UserStartsWithDash,
    /// A user name with characters other than ASCII letters, digits, `.`, `_` and `-`.
    InvalidUser(String),
    /// A `git://` URL with a user name, which git would take for part of the host.
    UserInGitUrl,
    /// A URL without a host.
    MissingHost,
    /// A host that starts with `-`, which ssh would read as an option.
    HostStartsWithDash,
    /// A host name that is not ASCII.
    NonAsciiHost(String),
    /// A host name with a character that host names do not have.
    InvalidHostCharacter {
        /// The host as written.
        host: String,
        /// The first character that is not accepted.
        character: char,
    },
    /// A host name with an empty label, as in `a..b` or `.a`.
    EmptyHostLabel(String),
    /// A host that reads as an IPv4 address (its last label is a number) but is not a valid one.
    InvalidIpv4(String),
    /// A loopback, unspecified or link-local host.
    ForbiddenAddress {
        /// The host as written.
        host: String,
        /// Which kind of address it is.
        kind: AddressKind,
        /// The address it spells, when it is numeric.
        ip: Option<IpAddr>,
    },
    /// `[` or `]` other than around an IPv6 address host.
    Brackets,
    /// A port that is not a number from 1 to 65535, as written.
    InvalidPort(String),
    /// A URL or scp-like remote without a repository path.
    MissingPath,
    /// A repository path whose first segment starts with `-`, which git would read as an option.
    PathStartsWithDash,
}

impl fmt::Display for GitRepoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "must not be empty"),
            Self::TooLong(len) => write!(f, "must be at most {GIT_REPO_MAX_LEN} characters, got {len}"),
            Self::WhitespaceOrControl => write!(f, "must not contain white space or control characters"),
            Self::LeadingDash => write!(f, "must not start with '-'"),
            Self::InvisibleCharacter(c) => write!(
                f,
                "must not contain the invisible or text-direction character U+{:04X}, which makes the remote read \
                 differently from what git fetches; type the remote again",
                u32::from(*c)
            ),
            Self::Backslash => {
                write!(f, "must not contain '\\', which URL parsers disagree about; separate path segments with '/'")
            }
            Self::MalformedPercentEncoding => {
                write!(f, "has a '%' that is not followed by two hex digits; write a '%' itself as %25")
            }
            Self::EncodedControlCharacter(e) => write!(f, "must not contain the percent-encoded control character {e}"),
            Self::QueryOrFragment(c) => write!(
                f,
                "must not contain '{c}': a git remote has no query string or fragment; remove everything from '{c}' on"
            ),
            Self::TransportHelper(t) => write!(f, "git transport helper \"{t}::\" is not supported"),
            Self::UnsupportedScheme(s) => write!(f, "scheme \"{s}://\" is not supported"),
            Self::UppercaseScheme(s) => write!(
                f,
                "scheme \"{s}://\" must be written in lowercase, as \"{}://\": git does not recognise it otherwise",
                s.to_ascii_lowercase()
            ),
            Self::LocalPath => write!(f, "local paths are not supported, the repository must be remote"),
            Self::PercentInAuthority => write!(
                f,
                "must not contain '%' in the user, host or port: git decodes it before it picks the host, so the \
                 host checked would not be the host reached; write them without percent-encoding"
            ),
            Self::MultipleAt => write!(
                f,
                "must not contain more than one '@' before the host, which makes it ambiguous which part is the host"
            ),
            Self::EmptyUser => write!(f, "must not have an empty user name before '@'; name the user or leave out '@'"),
            Self::EmbeddedPassword => write!(
                f,
                "must not embed a password: credentials in a Website are readable by everyone who can read the Website"
            ),
            Self::AccessToken(prefix) => write!(
                f,
                "must not embed a credential: the user name starting with \"{prefix}\" looks like an access token, and \
                 credentials do not belong in a Website, which everyone who can read the Website can read"
            ),
            Self::UserStartsWithDash => {
                write!(f, "the user name must not start with '-', which ssh would read as an option")
            }
            Self::InvalidUser(u) => {
                write!(f, "user name \"{u}\" may contain only ASCII letters, digits, '.', '_' and '-'")
            }
            Self::UserInGitUrl => write!(
                f,
                "a git:// URL cannot name a user, git would take it for part of the host; leave out the user or use \
                 ssh://user@host/path"
            ),
            Self::MissingHost => write!(f, "must name a host"),
            Self::HostStartsWithDash => {
                write!(f, "the host must not start with '-', which ssh would read as an option")
            }
            Self::NonAsciiHost(h) => write!(
                f,
                "host \"{h}\" is not ASCII: write an internationalised host name in its punycode form (xn--...)"
            ),
            Self::InvalidHostCharacter { host, character } => write!(
                f,
                "host \"{host}\" must not contain '{character}': a host name may contain only ASCII letters, digits, \
                 '-', '.' and '_', and an IPv6 address must be in brackets, as in [2001:db8::1]"
            ),
            Self::EmptyHostLabel(h) => write!(
                f,
                "host \"{h}\" has an empty label: its dots must separate non-empty names, with at most one trailing dot"
            ),
            Self::InvalidIpv4(h) => write!(
                f,
                "host \"{h}\" is not a valid IPv4 address, which a host whose last label is a number must be; write \
                 four numbers from 0 to 255, as in 10.0.0.7, or a host name"
            ),
            Self::ForbiddenAddress { host, kind, ip: Some(ip) } => {
                write!(f, "host \"{host}\" is {ip}, {kind}; the repository must be on another host")
            }
            Self::ForbiddenAddress { host, kind, ip: None } => {
                write!(f, "host \"{host}\" is {kind}; the repository must be on another host")
            }
            Self::Brackets => write!(
                f,
                "may have '[' and ']' only around an IPv6 address host, as in ssh://git@[2001:db8::1]/org/repo.git; \
                 for a host with a port write ssh://host:port/path"
            ),
            Self::InvalidPort(p) if p.contains(':') => write!(
                f,
                "port \"{p}\" must be a number from 1 to 65535; write an IPv6 address in brackets, as in \
                 https://[2001:db8::1]/repo.git"
            ),
            Self::InvalidPort(p) => write!(f, "port \"{p}\" must be a number from 1 to 65535"),
            Self::MissingPath => write!(f, "must name a repository path after the host"),
            Self::PathStartsWithDash => write!(
                f,
                "the repository path must not start with '-', also percent-encoded, which git would read as an option"
            ),
        }
    }
}

impl std::error::Error for GitRepoError {}

impl GitRepo {
    /// Parses and checks a git remote.
    ///
    /// # Errors
    /// Returns the first rule the input breaks; see [`GitRepoError`].
    pub fn parse(input: &str) -> Result<Self, GitRepoError> {
        check_characters(input)?;
        if let Some(helper) = transport_helper(input) {
            return Err(GitRepoError::TransportHelper(helper.to_owned()));
        }
        // Like git, which looks for "://" anywhere to find a URL, and dies when what precedes it is no scheme
        // it knows.
        if let Some((scheme, rest)) = input.split_once("://") {
            return Self::parse_url(input, scheme, rest);
        }
        Self::parse_scp_like(input)
    }

    /// `scheme://[user@]host[:port]/path`.
    fn parse_url(input: &str, scheme: &str, rest: &str) -> Result<Self, GitRepoError> {
        let transport = match scheme {
            "https" => Transport::Https,
            "http" => Transport::Http,
            "ssh" => Transport::Ssh,
            "git" => Transport::Git,
            _ => {
                let lower = scheme.to_ascii_lowercase();
                return Err(if lower == "file" {
                    GitRepoError::LocalPath
                } else if GIT_SCHEMES.contains(&lower.as_str()) {
                    GitRepoError::UppercaseScheme(scheme.to_owned())
                } else {
                    GitRepoError::UnsupportedScheme(lower)
                });
            }
        };
        let (authority, path) = rest.find('/').map_or((rest, ""), |slash| rest.split_at(slash));
        if authority.is_empty() {
            return Err(GitRepoError::MissingHost);
        }
        let (user, host_port) = split_user(authority)?;
        if user.is_some() && transport == Transport::Git {
            return Err(GitRepoError::UserInGitUrl);
        }
        let (host, port) = match host_port.strip_prefix('[') {
            Some(bracketed) => {
                let (inner, after) = bracketed.split_once(']').ok_or(GitRepoError::Brackets)?;
                let port = match after {
                    "" => None,
                    _ => Some(parse_port(after.strip_prefix(':').ok_or(GitRepoError::Brackets)?)?),
                };
                (Host::Bracketed(inner), port)
            }
            None => match host_port.split_once(':') {
                Some((host, port)) => (Host::Plain(host), Some(parse_port(port)?)),
                None => (Host::Plain(host_port), None),
            },
        };
        let (host, ip) = host.check()?;
        check_path(path, false)?;
        Ok(Self {
            raw: input.to_owned(),
            transport,
            scp_like: false,
            user: user.map(|user| span(input, user)),
            host: span(input, host),
            ip,
            port,
            path: span(input, path),
        })
    }

    /// scp-like `[user@]host:path`, where no `/` comes before the first `:`, and the host may be an IPv6
    /// address in brackets.
    fn parse_scp_like(input: &str) -> Result<Self, GitRepoError> {
        let Some(colon) = input.find(':') else {
            return Err(GitRepoError::LocalPath);
        };
        let before = &input[..colon];
        if before.contains('/') {
            return Err(GitRepoError::LocalPath);
        }
        let (user_host, path) = match before.find('[') {
            // `[host]:path` or `user@[host]:path`: the first ':' is inside the brackets.
            Some(open) => {
                let close = input[open..].find(']').map(|i| open + i).ok_or(GitRepoError::Brackets)?;
                let path = match &input[close + 1..] {
                    "" => return Err(GitRepoError::MissingPath),
                    after => after.strip_prefix(':').ok_or(GitRepoError::Brackets)?,
                };
                (&input[..=close], path)
            }
            None => (before, &input[colon + 1..]),
        };
        let (user, host) = split_user(user_host)?;
        // Without a user, `C:site` is a Windows drive path.
        if user.is_none() && host.len() == 1 && host.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(GitRepoError::LocalPath);
        }
        let host = match host.strip_prefix('[') {
            Some(bracketed) => Host::Bracketed(bracketed.strip_suffix(']').ok_or(GitRepoError::Brackets)?),
            None => Host::Plain(host),
        };
        let (host, ip) = host.check()?;
        check_path(path, true)?;
        Ok(Self {
            raw: input.to_owned(),
            transport: Transport::Ssh,
            scp_like: true,
            user: user.map(|user| span(input, user)),
            host: span(input, host),
            ip,
            port: None,
            path: span(input, path),
        })
    }

    /// The remote exactly as written: what is stored and what git-sync is given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// How the remote is reached.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether the remote is fetched without encryption (`http://` or `git://`).
    pub fn is_unencrypted(&self) -> bool {
        matches!(self.transport, Transport::Http | Transport::Git)
    }

    /// Whether the remote is written scp-like, `[user@]host:path`, rather than as a URL.
    pub fn is_scp_like(&self) -> bool {
        self.scp_like
    }

    /// The URL scheme as written (always lowercase), or `None` for a scp-like remote.
    pub fn scheme(&self) -> Option<&'static str> {
        (!self.scp_like).then(|| self.transport.scheme())
    }

    /// The user name before `@`, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.clone().map(|user| &self.raw[user])
    }

    /// The host as written, without the brackets around an IPv6 address.
    pub fn host(&self) -> &str {
        &self.raw[self.host.clone()]
    }

    /// The address the host spells, when it is numeric (`10.0.0.7`, `[2001:db8::1]`, `167772167`).
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The port, if the URL names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The repository path as written: from the `/` after the host in a URL, after the `:` in a scp-like
    /// remote.
    pub fn path(&self) -> &str {
        &self.raw[self.path.clone()]
    }
}

/// Rules about single characters, wherever they are.
fn check_characters(input: &str) -> Result<(), GitRepoError> {
    if input.trim().is_empty() {
        return Err(GitRepoError::Empty);
    }
    // A character takes at least a byte: only a long input needs counting.
    if input.len() > GIT_REPO_MAX_LEN {
        let len = input.chars().count();
        if len > GIT_REPO_MAX_LEN {
            return Err(GitRepoError::TooLong(len));
        }
    }
    let ascii = input.is_ascii();
    // In ASCII, the whitespace and control characters are the bytes up to the space, and DEL.
    let blank_or_control = if ascii {
        input.bytes().any(|b| b <= b' ' || b == 0x7f)
    } else {
        input.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if blank_or_control {
        return Err(GitRepoError::WhitespaceOrControl);
    }
    if input.starts_with('-') {
        return Err(GitRepoError::LeadingDash);
    }
    if !ascii && let Some(c) = input.chars().find(|&c| is_invisible(c)) {
        return Err(GitRepoError::InvisibleCharacter(c));
    }
    if input.contains('\\') {
        return Err(GitRepoError::Backslash);
    }
    check_percent_encoding(input)?;
    if let Some(b) = input.bytes().find(|b| matches!(b, b'?' | b'#')) {
        return Err(GitRepoError::QueryOrFragment(char::from(b)));
    }
    Ok(())
}

fn is_invisible(c: char) -> bool {
    // The first range starts above ASCII and Latin-1's letters.
    c >= INVISIBLE[0].0 && INVISIBLE.iter().any(|&(first, last)| (first..=last).contains(&c))
}

/// Every `%` starts two hex digits that encode neither a control character nor, with the bytes around them,
/// an invisible character.
fn check_percent_encoding(input: &str) -> Result<(), GitRepoError> {
    let mut rest = input;
    while let Some(percent) = rest.find('%') {
        let hex = rest
            .get(percent + 1..percent + 3)
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(GitRepoError::MalformedPercentEncoding)?;
        let byte = u8::from_str_radix(hex, 16).map_err(|_| GitRepoError::MalformedPercentEncoding)?;
        if byte < 0x20 || byte == 0x7f {
            return Err(GitRepoError::EncodedControlCharacter(format!("%{hex}")));
        }
        rest = &rest[percent + 3..];
    }
    if input.contains('%')
        && let Some(c) = percent_decode(input).chars().find(|&c| is_invisible(c))
    {
        return Err(GitRepoError::InvisibleCharacter(c));
    }
    Ok(())
}

/// Decodes every `%` followed by two hex digits, as git's `url_decode` does; invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The helper of a `transport::address` remote, as git finds it: a leading run of URL-scheme characters
/// followed by `::`.
fn transport_helper(input: &str) -> Option<&str> {
    let end = input.find(|c: char| !is_scheme_char(c)).unwrap_or(input.len());
    (end > 0 && input[end..].starts_with("::")).then(|| &input[..end])
}

fn is_scheme_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')
}

/// Splits `[user@]host[:port]` at its `@` and checks the user.
fn split_user(authority: &str) -> Result<(Option<&str>, &str), GitRepoError> {
    if authority.contains('%') {
        return Err(GitRepoError::PercentInAuthority);
    }
    let Some((user, host)) = authority.split_once('@') else {
        return Ok((None, authority));
    };
    if host.contains('@') {
        return Err(GitRepoError::MultipleAt);
    }
    check_user(user)?;
    Ok((Some(user), host))
}

fn check_user(user: &str) -> Result<(), GitRepoError> {
    if user.contains(':') {
        return Err(GitRepoError::EmbeddedPassword);
    }
    if user.is_empty() {
        return Err(GitRepoError::EmptyUser);
    }
    if user.starts_with('-') {
        return Err(GitRepoError::UserStartsWithDash);
    }
    let lower = user.to_ascii_lowercase();
    if let Some(prefix) = TOKEN_PREFIXES.into_iter().find(|p| lower.starts_with(p)) {
        return Err(GitRepoError::AccessToken(prefix));
    }
    if user.contains(['[', ']']) {
        return Err(GitRepoError::Brackets);
    }
    if !user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(GitRepoError::InvalidUser(user.to_owned()));
    }
    Ok(())
}

fn parse_port(port: &str) -> Result<u16, GitRepoError> {
    port.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| port.parse::<u16>().ok())
        .flatten()
        .filter(|&p| p != 0)
        .ok_or_else(|| GitRepoError::InvalidPort(port.to_owned()))
}

/// A host as written: a name or IPv4 address, or what is between brackets.
enum Host<'a> {
    Plain(&'a str),
    Bracketed(&'a str),
}

impl<'a> Host<'a> {
    /// Checks the host and returns it without brackets, with the address it spells when it is numeric.
    fn check(self) -> Result<(&'a str, Option<IpAddr>), GitRepoError> {
        match self {
            Self::Bracketed(inner) => {
                let ip = inner.parse::<Ipv6Addr>().map_err(|_| GitRepoError::Brackets)?;
                refuse_local(inner, ipv6_kind(ip), Some(IpAddr::V6(ip)))?;
                Ok((inner, Some(IpAddr::V6(ip))))
            }
            Self::Plain(host) => check_host_name(host).map(|ip| (host, ip.map(IpAddr::V4))),
        }
    }
}

/// Checks a host that is not in brackets: a host name or an IPv4 address in any spelling `inet_aton` reads.
fn check_host_name(host: &str) -> Result<Option<Ipv4Addr>, GitRepoError> {
    if host.is_empty() {
        return Err(GitRepoError::MissingHost);
    }
    if host.starts_with('-') {
        return Err(GitRepoError::HostStartsWithDash);
    }
    if !host.is_ascii() {
        return Err(GitRepoError::NonAsciiHost(host.to_owned()));
    }
    if host.contains(['[', ']']) {
        return Err(GitRepoError::Brackets);
    }
    if let Some(character) = host.chars().find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))) {
        return Err(GitRepoError::InvalidHostCharacter { host: host.to_owned(), character });
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if ends_in_number(name) {
        let ip = parse_ipv4(name).ok_or_else(|| GitRepoError::InvalidIpv4(host.to_owned()))?;
        refuse_local(host, ipv4_kind(ip), Some(IpAddr::V4(ip)))?;
        return Ok(Some(ip));
    }
    if name.split('.').any(str::is_empty) {
        return Err(GitRepoError::EmptyHostLabel(host.to_owned()));
    }
    let last_label = name.rsplit('.').next().unwrap_or(name);
    if last_label.eq_ignore_ascii_case("localhost") {
        refuse_local(host, Some(AddressKind::Loopback), None)?;
    }
    Ok(None)
}

fn refuse_local(host: &str, kind: Option<AddressKind>, ip: Option<IpAddr>) -> Result<(), GitRepoError> {
    match kind {
        Some(kind) => Err(GitRepoError::ForbiddenAddress { host: host.to_owned(), kind, ip }),
        None => Ok(()),
    }
}

fn ipv4_kind(ip: Ipv4Addr) -> Option<AddressKind> {
    match ip.octets() {
        [0, ..] => Some(AddressKind::Unspecified),
        [127, ..] => Some(AddressKind::Loopback),
        [169, 254, ..] => Some(AddressKind::LinkLocal),
        _ => None,
    }
}

/// Also the IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) forms of the IPv4 kinds.
fn ipv6_kind(ip: Ipv6Addr) -> Option<AddressKind> {
    if ip.is_unspecified() {
        Some(AddressKind::Unspecified)
    } else if ip.is_loopback() {
        Some(AddressKind::Loopback)
    } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
        Some(AddressKind::LinkLocal)
    } else {
        ip.to_ipv4().and_then(ipv4_kind)
    }
}

/// Whether the last dot-separated label is a number (decimal, or `0x` hex), which makes the host an IPv4
/// address to git, curl and the WHATWG URL standard alike.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// An IPv4 address in 1 to 4 parts, each decimal, `0x` hex or leading-`0` octal, the last part filling the
/// remaining bytes (`127.1`, `0x7f000001`, `0177.0.0.1`).
fn parse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let numbers = name.split('.').map(parse_ipv4_number).collect::<Option<Vec<u64>>>()?;
    let (&last, init) = numbers.split_last()?;
    if init.len() > 3 || init.iter().any(|&n| n > 255) || last >= 1 << (8 * (4 - init.len())) {
        return None;
    }
    let address = init.iter().zip([24, 16, 8]).fold(last, |address, (&n, shift)| address | n << shift);
    u32::try_from(address).ok().map(Ipv4Addr::from)
}

fn parse_ipv4_number(part: &str) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else if part.is_empty() {
        return None;
    } else {
        (part, 10)
    };
    digits.chars().try_fold(0u64, |n, c| n.checked_mul(u64::from(radix))?.checked_add(u64::from(c.to_digit(radix)?)))
}

/// The path of a URL (from its `/`) or of a scp-like remote (after its `:`).
fn check_path(path: &str, scp_like: bool) -> Result<(), GitRepoError> {
    if path.trim_matches('/').is_empty() {
        return Err(GitRepoError::MissingPath);
    }
    // `alice:secret@host:repo` reads as host "alice" and path "secret@host:repo".
    if scp_like && first_segment(path).contains('@') {
        return Err(GitRepoError::EmbeddedPassword);
    }
    let decoded = if path.contains('%') { Cow::Owned(percent_decode(path)) } else { Cow::Borrowed(path) };
    if first_segment(path).starts_with('-') || first_segment(&decoded).starts_with('-') {
        return Err(GitRepoError::PathStartsWithDash);
    }
    // git looks for "@[" anywhere in the remote to find a bracketed host, even in the path.
    if path.contains(['[', ']']) || decoded.contains(['[', ']']) {
        return Err(GitRepoError::Brackets);
    }
    Ok(())
}

fn first_segment(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    path.split('/').next().unwrap_or(path)
}

/// Why a string is not an accepted `spec.ref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefError {
    /// The empty string.
    Empty,
    /// Longer than [`REF_MAX_LEN`] characters.
    TooLong(usize),
    /// Starts with `-`, which git would read as an option.
    LeadingDash,
    /// Contains a character git refuses in ref names: an ASCII control character, space, `~`, `^`, `:`, `?`,
    /// `*`, `[` or `\`.
    ForbiddenCharacter(char),
    /// The single character `@`, which git reads as `HEAD`.
    SingleAt,
    /// Contains `..`.
    DoubleDot,
    /// Contains `@{`.
    AtBrace,
    /// Starts or ends with `/`, or contains `//`.
    EmptyComponent,
    /// A `/`-separated component starts with `.`.
    ComponentStartsWithDot,
    /// A `/`-separated component ends with `.lock`.
    ComponentEndsWithLock,
    /// Ends with `.`.
    TrailingDot,
}

impl fmt::Display for RefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "must not be empty; leave it out to serve the remote's default branch"),
            Self::TooLong(len) => write!(f, "must be at most {REF_MAX_LEN} characters, got {len}"),
            Self::LeadingDash => write!(f, "must not start with '-'"),
            Self::ForbiddenCharacter(' ') => write!(f, "must not contain a space"),
            Self::ForbiddenCharacter(c) if c.is_ascii_control() => {
                write!(f, "must not contain the control character U+{:04X}", u32::from(*c))
            }
            Self::ForbiddenCharacter(c) => write!(f, "must not contain '{c}'"),
            Self::SingleAt => write!(f, "must not be '@' alone, which git reads as HEAD"),
            Self::DoubleDot => write!(f, "must not contain \"..\""),
            Self::AtBrace => write!(f, "must not contain \"@{{\""),
            Self::EmptyComponent => write!(f, "must not start or end with '/' or contain \"//\""),
            Self::ComponentStartsWithDot => write!(f, "no '/'-separated part of it may start with '.'"),
            Self::ComponentEndsWithLock => write!(f, "no '/'-separated part of it may end with \".lock\""),
            Self::TrailingDot => write!(f, "must not end with '.'"),
        }
    }
}

impl std::error::Error for RefError {}

/// Checks a branch, tag or commit name: it accepts exactly what `git check-ref-format --allow-onelevel`
/// accepts (which includes full commit names, 40 or 64 hex digits), except a leading `-`, which git-sync
/// would read as an option, and names longer than [`REF_MAX_LEN`] characters.
///
/// # Errors
/// Returns the first rule the name breaks; see [`RefError`].
pub fn check_ref(name: &str) -> Result<(), RefError> {
    if name.is_empty() {
        return Err(RefError::Empty);
    }
    let len = name.chars().count();
    if len > REF_MAX_LEN {
        return Err(RefError::TooLong(len));
    }
    if name.starts_with('-') {
        return Err(RefError::LeadingDash);
    }
    let forbidden = |c: char| c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\');
    if let Some(c) = name.chars().find(|&c| forbidden(c)) {
        return Err(RefError::ForbiddenCharacter(c));
    }
    if name == "@" {
        return Err(RefError::SingleAt);
    }
    if name.contains("..") {
        return Err(RefError::DoubleDot);
    }
    if name.contains("@{") {
        return Err(RefError::AtBrace);
    }
    if name.split('/').any(str::is_empty) {
        return Err(RefError::EmptyComponent);
    }
    if name.split('/').any(|part| part.starts_with('.')) {
        return Err(RefError::ComponentStartsWithDot);
    }
    if name.split('/').any(|part| part.ends_with(".lock")) {
        return Err(RefError::ComponentEndsWithLock);
    }
    if name.ends_with('.') {
        return Err(RefError::TrailingDot);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_ranges_are_sorted_so_that_ascii_skips_them() {
        assert!(INVISIBLE.windows(2).all(|w| w[0].1 < w[1].0), "{INVISIBLE:?}");
        assert!(INVISIBLE.iter().all(|&(first, last)| first <= last));
        assert!(!(0..=0xFFu32).filter_map(char::from_u32).filter(|&c| c != '\u{00AD}').any(is_invisible));
        assert!(is_invisible('\u{00AD}') && is_invisible('\u{200B}') && is_invisible('\u{E007F}'));
    }

    /// The parts of a remote in one line: its scheme (or `scp-like`), then `user=`, `host=`, `port=` and
    /// `path=` for the parts it has.
    fn parts(repo: &GitRepo) -> String {
        let mut line = repo.scheme().unwrap_or("scp-like").to_owned();
        if let Some(user) = repo.user() {
            line += &format!(" user={user}");
        }
        line += &format!(" host={}", repo.host());
        if let Some(port) = repo.port() {
            line += &format!(" port={port}");
        }
        line + &format!(" path={}", repo.path())
    }

    #[test]
    fn accepts_remote_repositories_and_splits_them_into_their_parts() {
        let cases = [
            (
                "https://github.com/luksa/kubia-website-example.git",
                "https host=github.com path=/luksa/kubia-website-example.git",
            ),
            ("https://git.example.com:8443/team/site.git", "https host=git.example.com port=8443 path=/team/site.git"),
            ("https://user@example.com/org/repo.git", "https user=user host=example.com path=/org/repo.git"),
            ("https://oauth2@gitlab.com/org/repo.git", "https user=oauth2 host=gitlab.com path=/org/repo.git"),
            ("http://git.internal/site.git", "http host=git.internal path=/site.git"),
            ("http://gitea:3000/org/site.git", "http host=gitea port=3000 path=/org/site.git"),
            ("ssh://git@github.com/luksa/site.git", "ssh user=git host=github.com path=/luksa/site.git"),
            ("ssh://git@example.com:2222/org/repo.git", "ssh user=git host=example.com port=2222 path=/org/repo.git"),
            (
                "ssh://deploy.bot@example.com/~deploy/site.git",
                "ssh user=deploy.bot host=example.com path=/~deploy/site.git",
            ),
            ("ssh://git_server.internal/site.git", "ssh host=git_server.internal path=/site.git"),
            ("git://example.com/repo.git", "git host=example.com path=/repo.git"),
            ("git://example.com:9418/repo.git", "git host=example.com port=9418 path=/repo.git"),
            ("https://git.ns.svc.cluster.local/org/site.git", "https host=git.ns.svc.cluster.local path=/org/site.git"),
            ("https://example.com./org/repo.git", "https host=example.com. path=/org/repo.git"),
            ("https://xn--bcher-kva.example/repo.git", "https host=xn--bcher-kva.example path=/repo.git"),
            ("https://localhost.example.com/repo.git", "https host=localhost.example.com path=/repo.git"),
            ("https://example.com/org/my%20site.git", "https host=example.com path=/org/my%20site.git"),
            ("https://[2001:db8::1]/repo.git", "https host=2001:db8::1 path=/repo.git"),
            ("ssh://git@[2001:db8::1]:2222/r.git", "ssh user=git host=2001:db8::1 port=2222 path=/r.git"),
            ("https://10.0.0.7/repo.git", "https host=10.0.0.7 path=/repo.git"),
            ("git@github.com:luksa/site.git", "scp-like user=git host=github.com path=luksa/site.git"),
            ("deploy.bot@git.example.com:org/site", "scp-like user=deploy.bot host=git.example.com path=org/site"),
            ("oauth2@gitlab.com:org/repo.git", "scp-like user=oauth2 host=gitlab.com path=org/repo.git"),
            ("gitea:org/site.git", "scp-like host=gitea path=org/site.git"),
            ("git@[2001:db8::1]:org/repo.git", "scp-like user=git host=2001:db8::1 path=org/repo.git"),
            ("git@10.0.0.7:/srv/git/site.git", "scp-like user=git host=10.0.0.7 path=/srv/git/site.git"),
        ];
        for (input, want) in cases {
            let repo = GitRepo::parse(input).unwrap_or_else(|e| panic!("{input:?} refused: {e}"));
            assert_eq!(parts(&repo), want, "{input}");
            assert_eq!(repo.as_str(), input, "the remote is kept exactly as written");
            assert_eq!(repo.is_scp_like(), want.starts_with("scp-like"), "{input}");
            let transport =
                if repo.is_scp_like() { Transport::Ssh.scheme() } else { want.split(' ').next().unwrap_or("") };
            assert_eq!(repo.transport().scheme(), transport, "{input}");
        }
    }

    #[test]
    fn numeric_hosts_are_read_as_the_addresses_git_would_reach() {
        let cases = [
            ("https://10.0.0.7/r.git", "10.0.0.7"),
            ("https://167772167/r.git", "10.0.0.7"),
            ("https://0xa.7/r.git", "10.0.0.7"),
            ("https://012.0.7/r.git", "10.0.0.7"),
            ("https://[2001:db8::1]/r.git", "2001:db8::1"),
            ("https://[::ffff:10.0.0.7]/r.git", "::ffff:10.0.0.7"),
        ];
        for (input, ip) in cases {
            let repo = GitRepo::parse(input).unwrap_or_else(|e| panic!("{input:?} refused: {e}"));
            assert_eq!(repo.ip().map(|ip| ip.to_string()).as_deref(), Some(ip), "{input}");
        }
        assert_eq!(GitRepo::parse("https://example.com/r.git").map(|r| r.ip()), Ok(None));
    }

    fn forbidden(host: &str, kind: AddressKind, ip: Option<&str>) -> GitRepoError {
        let ip = ip.map(|ip| ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}")));
        GitRepoError::ForbiddenAddress { host: host.into(), kind, ip }
    }

    fn host_char(host: &str, character: char) -> GitRepoError {
        GitRepoError::InvalidHostCharacter { host: host.into(), character }
    }

    /// One row or more per rule; `every_rule_has_a_refused_example` checks that none is missing.
    fn refused_examples() -> Vec<(String, GitRepoError)> {
        use AddressKind::{LinkLocal, Loopback, Unspecified};
        use GitRepoError as E;
        let too_long = format!("https://example.com/{}", "a".repeat(GIT_REPO_MAX_LEN));
        let rows: Vec<(&str, GitRepoError)> = vec![
            ("", E::Empty),
            ("   ", E::Empty),
            (&too_long, E::TooLong(GIT_REPO_MAX_LEN + 20)),
            ("https://example.com/my repo.git", E::WhitespaceOrControl),
            ("https://example.com/repo.git\n", E::WhitespaceOrControl),
            ("https://example.com/re\u{7}po.git", E::WhitespaceOrControl),
            ("https://exa\u{a0}mple.com/repo.git", E::WhitespaceOrControl),
            ("\thttps://example.com/repo.git", E::WhitespaceOrControl),
            ("--upload-pack=touch /tmp/pwned", E::WhitespaceOrControl),
            ("--upload-pack=/bin/evil", E::LeadingDash),
            ("-oProxyCommand=evil@host:path", E::LeadingDash),
            ("https://git\u{200B}hub.com/org/repo.git", E::InvisibleCharacter('\u{200B}')),
            ("https://github.com/org/\u{202E}tig.oper", E::InvisibleCharacter('\u{202E}')),
            ("https://github.com/org/repo.git\u{2066}", E::InvisibleCharacter('\u{2066}')),
            ("\u{FEFF}https://github.com/org/repo.git", E::InvisibleCharacter('\u{FEFF}')),
            ("https://github.com/or\u{AD}g/repo.git", E::InvisibleCharacter('\u{AD}')),
            ("https://github.com/org/\u{3164}/repo.git", E::InvisibleCharacter('\u{3164}')),
            ("https://github.com/org/repo\u{FE0F}.git", E::InvisibleCharacter('\u{FE0F}')),
            ("https://github.com/org/a%E2%80%8Bb.git", E::InvisibleCharacter('\u{200B}')),
            ("https://example.com\\@evil.example/repo.git", E::Backslash),
            ("git@example.com:org\\repo.git", E::Backslash),
            ("https://example.com/100%/repo.git", E::MalformedPercentEncoding),
            ("https://example.com/repo.git%2", E::MalformedPercentEncoding),
            ("https://example.com/repo%0a.git", E::EncodedControlCharacter("%0a".into())),
            ("https://example.com/repo%00.git", E::EncodedControlCharacter("%00".into())),
            ("https://example.com/repo%7F.git", E::EncodedControlCharacter("%7F".into())),
            ("git@example.com:repo%1F.git", E::EncodedControlCharacter("%1F".into())),
            ("https://example.com/repo.git?ref=main", E::QueryOrFragment('?')),
            ("https://example.com/repo.git#main", E::QueryOrFragment('#')),
            ("git@example.com:repo.git?x", E::QueryOrFragment('?')),
            ("ext::sh", E::TransportHelper("ext".into())),
            ("fd::17", E::TransportHelper("fd".into())),
            ("ext::ssh://example.com/repo.git", E::TransportHelper("ext".into())),
            ("ftp://example.com/repo.git", E::UnsupportedScheme("ftp".into())),
            ("git+ssh://example.com/repo.git", E::UnsupportedScheme("git+ssh".into())),
            ("HTTPS://github.com/luksa/kubia-website-example", E::UppercaseScheme("HTTPS".into())),
            ("Ssh://git@example.com/repo.git", E::UppercaseScheme("Ssh".into())),
            ("file:///etc/passwd", E::LocalPath),
            ("FILE:///srv/git/site.git", E::LocalPath),
            ("/srv/git/site.git", E::LocalPath),
            ("./site", E::LocalPath),
            ("../site.git", E::LocalPath),
            ("~/site.git", E::LocalPath),
            ("site.git", E::LocalPath),
            ("C:site", E::LocalPath),
            ("./a:b", E::LocalPath),
            ("ssh://git%40evil.example@github.com/org/repo.git", E::PercentInAuthority),
            ("ssh://%2DoProxyCommand=x@example.com/repo.git", E::PercentInAuthority),
            ("https://example.com%2F@evil.example/repo.git", E::PercentInAuthority),
            ("ssh://git@example.com:%32%32/repo.git", E::PercentInAuthority),
            ("git%40evil.example@github.com:org/repo.git", E::PercentInAuthority),
            ("https://a@b@example.com/repo.git", E::MultipleAt),
            ("git@evil.example@github.com:org/repo.git", E::MultipleAt),
            ("ssh://@example.com/repo.git", E::EmptyUser),
            ("@example.com:repo.git", E::EmptyUser),
            ("https://user:hunter2@example.com/repo.git", E::EmbeddedPassword),
            ("ssh://git:secret@example.com/repo.git", E::EmbeddedPassword),
            ("https://:token@example.com/repo.git", E::EmbeddedPassword),
            ("https://user:@example.com/repo.git", E::EmbeddedPassword),
            ("alice:hunter2@example.com:site.git", E::EmbeddedPassword),
            ("https://ghp_abc123@github.com/org/repo.git", E::AccessToken("ghp_")),
            ("https://gho_abc123@github.com/org/repo.git", E::AccessToken("gho_")),
            ("https://ghu_abc123@github.com/org/repo.git", E::AccessToken("ghu_")),
            ("https://ghs_abc123@github.com/org/repo.git", E::AccessToken("ghs_")),
            ("https://ghr_abc123@github.com/org/repo.git", E::AccessToken("ghr_")),
            ("https://github_pat_11ABC@github.com/org/repo.git", E::AccessToken("github_pat_")),
            ("https://glpat-abc123@gitlab.com/org/repo.git", E::AccessToken("glpat-")),
            ("ghp_abc123@github.com:org/repo.git", E::AccessToken("ghp_")),
            ("ssh://-oProxyCommand=x@example.com/repo.git", E::UserStartsWithDash),
            ("u$er@example.com:repo.git", E::InvalidUser("u$er".into())),
            ("https://us'er@example.com/repo.git", E::InvalidUser("us'er".into())),
            ("git://git@example.com/repo.git", E::UserInGitUrl),
            ("https://", E::MissingHost),
            ("https:///repo.git", E::MissingHost),
            ("ssh://git@/repo.git", E::MissingHost),
            ("ssh://:22/repo.git", E::MissingHost),
            ("git@:repo.git", E::MissingHost),
            ("ssh://-oProxyCommand=x/repo.git", E::HostStartsWithDash),
            ("https://-example.com/repo.git", E::HostStartsWithDash),
            ("git@-h:repo.git", E::HostStartsWithDash),
            ("https://bücher.example/repo.git", E::NonAsciiHost("bücher.example".into())),
            ("git@bücher.example:repo.git", E::NonAsciiHost("bücher.example".into())),
            ("https://exa*mple.com/repo.git", host_char("exa*mple.com", '*')),
            ("git@h!x:repo.git", host_char("h!x", '!')),
            ("https://example..com/repo.git", E::EmptyHostLabel("example..com".into())),
            ("https://.example.com/repo.git", E::EmptyHostLabel(".example.com".into())),
            ("https://example.com../repo.git", E::EmptyHostLabel("example.com..".into())),
            ("https://1.2.3.256/repo.git", E::InvalidIpv4("1.2.3.256".into())),
            ("https://1.2.3.4.5/repo.git", E::InvalidIpv4("1.2.3.4.5".into())),
            ("https://example.123/repo.git", E::InvalidIpv4("example.123".into())),
            ("https://0x100000000/repo.git", E::InvalidIpv4("0x100000000".into())),
            ("https://09.0.0.1/repo.git", E::InvalidIpv4("09.0.0.1".into())),
            ("https://1..1/repo.git", E::InvalidIpv4("1..1".into())),
            ("https://localhost/repo.git", forbidden("localhost", Loopback, None)),
            ("https://LocalHost./repo.git", forbidden("LocalHost.", Loopback, None)),
            ("https://git.localhost/repo.git", forbidden("git.localhost", Loopback, None)),
            ("git@localhost:repo.git", forbidden("localhost", Loopback, None)),
            ("https://127.0.0.1/repo.git", forbidden("127.0.0.1", Loopback, Some("127.0.0.1"))),
            ("https://127.1/repo.git", forbidden("127.1", Loopback, Some("127.0.0.1"))),
            ("https://127.0.1/repo.git", forbidden("127.0.1", Loopback, Some("127.0.0.1"))),
            ("https://2130706433/repo.git", forbidden("2130706433", Loopback, Some("127.0.0.1"))),
            ("https://0x7f000001/repo.git", forbidden("0x7f000001", Loopback, Some("127.0.0.1"))),
            ("https://0x7f.1/repo.git", forbidden("0x7f.1", Loopback, Some("127.0.0.1"))),
            ("https://0177.0.0.1/repo.git", forbidden("0177.0.0.1", Loopback, Some("127.0.0.1"))),
            ("https://017700000001/repo.git", forbidden("017700000001", Loopback, Some("127.0.0.1"))),
            ("https://0X7F.0.0x0.01/repo.git", forbidden("0X7F.0.0x0.01", Loopback, Some("127.0.0.1"))),
            ("https://127.0.0.1./repo.git", forbidden("127.0.0.1.", Loopback, Some("127.0.0.1"))),
            ("ssh://git@127.0.0.1:2222/repo.git", forbidden("127.0.0.1", Loopback, Some("127.0.0.1"))),
            ("git@127.1:repo.git", forbidden("127.1", Loopback, Some("127.0.0.1"))),
            ("https://[::1]/repo.git", forbidden("::1", Loopback, Some("::1"))),
            ("git@[::1]:repo.git", forbidden("::1", Loopback, Some("::1"))),
            ("https://[::ffff:127.0.0.1]/repo.git", forbidden("::ffff:127.0.0.1", Loopback, Some("::ffff:127.0.0.1"))),
            ("https://[::127.0.0.1]/repo.git", forbidden("::127.0.0.1", Loopback, Some("::127.0.0.1"))),
            ("https://0.0.0.0/repo.git", forbidden("0.0.0.0", Unspecified, Some("0.0.0.0"))),
            ("https://0/repo.git", forbidden("0", Unspecified, Some("0.0.0.0"))),
            ("https://[::]/repo.git", forbidden("::", Unspecified, Some("::"))),
            ("https://169.254.169.254/repo.git", forbidden("169.254.169.254", LinkLocal, Some("169.254.169.254"))),
            ("https://[fe80::1]/repo.git", forbidden("fe80::1", LinkLocal, Some("fe80::1"))),
            ("https://[febf::1]/repo.git", forbidden("febf::1", LinkLocal, Some("febf::1"))),
            (
                "https://[::ffff:169.254.169.254]/repo.git",
                forbidden("::ffff:169.254.169.254", LinkLocal, Some("::ffff:169.254.169.254")),
            ),
            ("[example.com:2222]:org/repo.git", E::Brackets),
            ("git@[example.com]:org/repo.git", E::Brackets),
            ("https://[example.com]/repo.git", E::Brackets),
            ("https://[2001:db8::1/repo.git", E::Brackets),
            ("https://[2001:db8::1]x/repo.git", E::Brackets),
            ("https://ex[ample.com/repo.git", E::Brackets),
            ("ssh://example.com/a@[evil.example]/repo.git", E::Brackets),
            ("ssh://example.com/a@%5Bevil.example%5D/repo.git", E::Brackets),
            ("git@example.com:org/a@[evil.example]", E::Brackets),
            ("https://example.com:99999/repo.git", E::InvalidPort("99999".into())),
            ("https://example.com:0/repo.git", E::InvalidPort("0".into())),
            ("https://example.com:/repo.git", E::InvalidPort("".into())),
            ("https://example.com:+22/repo.git", E::InvalidPort("+22".into())),
            ("ssh://example.com:-1/repo.git", E::InvalidPort("-1".into())),
            ("https://2001:db8::1/repo.git", E::InvalidPort("db8::1".into())),
            ("https://example.com", E::MissingPath),
            ("https://example.com/", E::MissingPath),
            ("ssh://git@example.com:2222", E::MissingPath),
            ("git@example.com:", E::MissingPath),
            ("git@example.com:/", E::MissingPath),
            ("git@[2001:db8::1]", E::MissingPath),
            ("ssh://example.com/-repo.git", E::PathStartsWithDash),
            ("https://example.com//-repo.git", E::PathStartsWithDash),
            ("ssh://example.com/%2Drepo.git", E::PathStartsWithDash),
            ("git://example.com/%2drepo.git", E::PathStartsWithDash),
            ("git@example.com:-repo.git", E::PathStartsWithDash),
            ("git@example.com:/-repo.git", E::PathStartsWithDash),
        ];
        rows.into_iter().map(|(input, err)| (input.to_owned(), err)).collect()
    }

    #[test]
    fn refuses_each_rule_with_the_rule_that_was_broken() {
        for (input, want) in refused_examples() {
            assert_eq!(GitRepo::parse(&input), Err(want), "{input:?}");
        }
    }

    /// The name of the rule an error reports. The match has no wildcard, so a new rule cannot be added
    /// without a name here, and `every_rule_has_a_refused_example` then asks for an example.
    fn rule(e: &GitRepoError) -> &'static str {
        use GitRepoError as E;
        match e {
            E::Empty => "Empty",
            E::TooLong(_) => "TooLong",
            E::WhitespaceOrControl => "WhitespaceOrControl",
            E::LeadingDash => "LeadingDash",
            E::InvisibleCharacter(_) => "InvisibleCharacter",
            E::Backslash => "Backslash",
            E::MalformedPercentEncoding => "MalformedPercentEncoding",
            E::EncodedControlCharacter(_) => "EncodedControlCharacter",
            E::QueryOrFragment(_) => "QueryOrFragment",
            E::TransportHelper(_) => "TransportHelper",
            E::UnsupportedScheme(_) => "UnsupportedScheme",
            E::UppercaseScheme(_) => "UppercaseScheme",
            E::LocalPath => "LocalPath",
            E::PercentInAuthority => "PercentInAuthority",
            E::MultipleAt => "MultipleAt",
            E::EmptyUser => "EmptyUser",
            E::EmbeddedPassword => "EmbeddedPassword",
            E::AccessToken(_) => "AccessToken",
            E::UserStartsWithDash => "UserStartsWithDash",
            E::InvalidUser(_) => "InvalidUser",
            E::UserInGitUrl => "UserInGitUrl",
            E::MissingHost => "MissingHost",
            E::HostStartsWithDash => "HostStartsWithDash",
            E::NonAsciiHost(_) => "NonAsciiHost",
            E::InvalidHostCharacter { .. } => "InvalidHostCharacter",
            E::EmptyHostLabel(_) => "EmptyHostLabel",
            E::InvalidIpv4(_) => "InvalidIpv4",
            E::ForbiddenAddress { .. } => "ForbiddenAddress",
            E::Brackets => "Brackets",
            E::InvalidPort(_) => "InvalidPort",
            E::MissingPath => "MissingPath",
            E::PathStartsWithDash => "PathStartsWithDash",
        }
    }

    const RULES: [&str; 32] = [
        "Empty",
        "TooLong",
        "WhitespaceOrControl",
        "LeadingDash",
        "InvisibleCharacter",
        "Backslash",
        "MalformedPercentEncoding",
        "EncodedControlCharacter",
        "QueryOrFragment",
        "TransportHelper",
        "UnsupportedScheme",
        "UppercaseScheme",
        "LocalPath",
        "PercentInAuthority",
        "MultipleAt",
        "EmptyUser",
        "EmbeddedPassword",
        "AccessToken",
        "UserStartsWithDash",
        "InvalidUser",
        "UserInGitUrl",
        "MissingHost",
        "HostStartsWithDash",
        "NonAsciiHost",
        "InvalidHostCharacter",
        "EmptyHostLabel",
        "InvalidIpv4",
        "ForbiddenAddress",
        "Brackets",
        "InvalidPort",
        "MissingPath",
        "PathStartsWithDash",
    ];

    #[test]
    fn every_rule_has_a_refused_example() {
        let covered: std::collections::BTreeSet<_> = refused_examples().iter().map(|(_, e)| rule(e)).collect();
        let missing: Vec<_> = RULES.iter().filter(|r| !covered.contains(*r)).collect();
        assert!(missing.is_empty(), "rules without a refused example: {missing:?}");
        assert_eq!(covered.len(), RULES.len(), "RULES lacks a rule that has examples");
    }

    #[test]
    fn every_rejection_message_is_lowercase_specific_and_names_no_rule_twice() {
        let mut first_message_of_rule = std::collections::BTreeMap::new();
        for (input, e) in refused_examples() {
            let msg = e.to_string();
            assert!(msg.starts_with(|c: char| c.is_lowercase()), "{input:?}: {msg}");
            assert!(!msg.ends_with('.'), "{input:?}: {msg}");
            first_message_of_rule.entry(rule(&e)).or_insert(msg);
        }
        let messages: std::collections::BTreeSet<_> = first_message_of_rule.values().collect();
        assert_eq!(messages.len(), first_message_of_rule.len(), "two rules share a message");
        let says = |input: &str, fragment: &str| {
            let msg = GitRepo::parse(input).expect_err(input).to_string();
            assert!(msg.contains(fragment), "{input:?}: {msg:?} lacks {fragment:?}");
        };
        says(&"a".repeat(3000), "2048");
        says("ftp://example.com/r.git", "\"ftp://\"");
        says("HTTPS://example.com/r.git", "lowercase, as \"https://\"");
        says("https://ghp_x@github.com/r.git", "looks like an access token");
        says("https://ghp_x@github.com/r.git", "credentials do not belong in a Website");
        says("https://127.1/r.git", "\"127.1\" is 127.0.0.1, a loopback address");
        says("https://127.1/r.git", "the repository must be on another host");
        says("https://[fe80::1]/r.git", "link-local");
        says("https://0.0.0.0/r.git", "unspecified");
        says("https://bücher.example/r.git", "punycode form (xn--...)");
        says("[example.com:2222]:r.git", "ssh://host:port/path");
        says("https://git\u{200B}hub.com/r.git", "U+200B");
        says("https://e.com/r%0A", "%0A");
        says("git://u@e.com/r.git", "ssh://user@host/path");
    }

    #[test]
    fn accepts_exactly_the_maximum_length() {
        let prefix = "https://example.com/";
        let at_limit = format!("{prefix}{}", "a".repeat(GIT_REPO_MAX_LEN - prefix.len()));
        assert!(GitRepo::parse(&at_limit).is_ok());
        assert_eq!(GitRepo::parse(&format!("{at_limit}b")), Err(GitRepoError::TooLong(GIT_REPO_MAX_LEN + 1)));
    }

    #[test]
    fn unencrypted_transports_are_flagged() {
        let flagged = |s: &str| GitRepo::parse(s).map(|r| r.is_unencrypted());
        assert_eq!(flagged("http://example.com/r.git"), Ok(true));
        assert_eq!(flagged("git://example.com/r.git"), Ok(true));
        assert_eq!(flagged("https://example.com/r.git"), Ok(false));
        assert_eq!(flagged("ssh://example.com/r.git"), Ok(false));
        assert_eq!(flagged("git@example.com:r.git"), Ok(false));
    }

    #[test]
    fn accepts_branches_tags_and_commits_as_git_does() {
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        let sha256 = "0123456789abcdef".repeat(4);
        let max = "a".repeat(REF_MAX_LEN);
        for name in [
            "main",
            "HEAD",
            "v1.2.3",
            "release/2024-10",
            "feature/x_y",
            sha1,
            &sha256,
            "a@b",
            "@@",
            "a./b",
            "a.lockx",
            "lock",
            "a\u{a0}b",
            "ré/sumé",
            "a{b}",
            "@/a",
            "x-",
            &max,
        ] {
            assert_eq!(check_ref(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn refuses_ref_names_git_would_refuse_or_misread() {
        use RefError as E;
        let too_long = "a".repeat(REF_MAX_LEN + 1);
        let cases = [
            ("", E::Empty),
            (&too_long, E::TooLong(REF_MAX_LEN + 1)),
            ("-main", E::LeadingDash),
            ("--orphan", E::LeadingDash),
            ("feature branch", E::ForbiddenCharacter(' ')),
            ("main\n", E::ForbiddenCharacter('\n')),
            ("a\u{7f}", E::ForbiddenCharacter('\u{7f}')),
            ("HEAD~1", E::ForbiddenCharacter('~')),
            ("HEAD^", E::ForbiddenCharacter('^')),
            ("a:b", E::ForbiddenCharacter(':')),
            ("a?b", E::ForbiddenCharacter('?')),
            ("a*", E::ForbiddenCharacter('*')),
            ("a[b", E::ForbiddenCharacter('[')),
            ("a\\b", E::ForbiddenCharacter('\\')),
            ("@", E::SingleAt),
            ("a..b", E::DoubleDot),
            ("a@{1}", E::AtBrace),
            ("@{", E::AtBrace),
            ("a//b", E::EmptyComponent),
            ("/main", E::EmptyComponent),
            ("main/", E::EmptyComponent),
            (".hidden", E::ComponentStartsWithDot),
            ("a/.b", E::ComponentStartsWithDot),
            ("main.lock", E::ComponentEndsWithLock),
            ("a.lock/b", E::ComponentEndsWithLock),
            ("main.", E::TrailingDot),
        ];
        for (name, want) in cases {
            assert_eq!(check_ref(name), Err(want), "{name:?}");
            let msg = want.to_string();
            assert!(msg.starts_with(|c: char| c.is_lowercase()), "{msg}");
        }
    }

    #[test]
    fn ref_messages_name_what_is_wrong() {
        let says = |name: &str, want: &str| assert_eq!(check_ref(name).map_err(|e| e.to_string()), Err(want.into()));
        says("-x", "must not start with '-'");
        says("a b", "must not contain a space");
        says("a\tb", "must not contain the control character U+0009");
        says("a~b", "must not contain '~'");
        says("a@{b", "must not contain \"@{\"");
        says("@", "must not be '@' alone, which git reads as HEAD");
        says(&"a".repeat(300), "must be at most 255 characters, got 300");
    }
}
