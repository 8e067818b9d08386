//! `spec.gitRepo` and `spec.ref`: what a git remote and a git revision may look like.
//!
//! The rules keep the git-sync sidecar safe from input that git would treat as something other than a
//! remote repository: local paths, `file://`, transport helpers (`ext::`), options (a leading `-`), and
//! credentials, which do not belong in a spec that every reader of the namespace can see.

use std::fmt;

use crate::types::{GIT_REPO_MAX_LEN, REF_MAX_LEN};

/// What `spec.gitRepo` accepts, appended to every rejection so the author knows what to write instead.
pub const GIT_REPO_ACCEPTED: &str =
    "accepted: an https://, http://, ssh:// or git:// URL with a host and a path, or scp-like user@host:path";

/// Schemes accepted in URL-form repositories.
pub const GIT_SCHEMES: [&str; 4] = ["https", "http", "ssh", "git"];

/// A validated git remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitRepo {
    raw: String,
    transport: Transport,
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
    /// A `transport::address` remote such as `ext::sh -c ...`.
    TransportHelper(String),
    /// A URL scheme other than those of [`GIT_SCHEMES`].
    UnsupportedScheme(String),
    /// A path on the local file system.
    LocalPath,
    /// A URL without a host.
    MissingHost,
    /// A URL or scp-like remote without a repository path.
    MissingPath,
    /// A URL with a password in its user-info part.
    EmbeddedPassword,
    /// Something that cannot be parsed as a URL at all.
    Malformed(String),
}

impl fmt::Display for GitRepoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "must not be empty"),
            Self::TooLong(len) => write!(f, "must be at most {GIT_REPO_MAX_LEN} characters, got {len}"),
            Self::WhitespaceOrControl => write!(f, "must not contain white space or control characters"),
            Self::LeadingDash => write!(f, "must not start with '-'"),
            Self::TransportHelper(t) => write!(f, "git transport helper \"{t}::\" is not supported"),
            Self::UnsupportedScheme(s) => write!(f, "scheme \"{s}://\" is not supported"),
            Self::LocalPath => write!(f, "local paths are not supported, the repository must be remote"),
            Self::MissingHost => write!(f, "must name a host"),
            Self::MissingPath => write!(f, "must name a repository path after the host"),
            Self::EmbeddedPassword => write!(
                f,
                "must not embed a password: credentials in a Website are readable by everyone who can read the Website"
            ),
            Self::Malformed(e) => write!(f, "is not a valid URL ({e})"),
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
        if input.trim().is_empty() {
            return Err(GitRepoError::Empty);
        }
        let len = input.chars().count();
        if len > GIT_REPO_MAX_LEN {
            return Err(GitRepoError::TooLong(len));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(GitRepoError::WhitespaceOrControl);
        }
        if input.starts_with('-') {
            return Err(GitRepoError::LeadingDash);
        }
        if let Some((scheme, rest)) = input.split_once("://") {
            return Self::parse_url(input, scheme, rest);
        }
        if let Some((helper, _)) = input.split_once("::")
            && !helper.is_empty()
            && !helper.contains(['/', '@', ':'])
        {
            return Err(GitRepoError::TransportHelper(helper.to_owned()));
        }
        Self::parse_scp_like(input)
    }

    fn parse_url(input: &str, scheme: &str, rest: &str) -> Result<Self, GitRepoError> {
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "https" => Transport::Https,
            "http" => Transport::Http,
            "ssh" => Transport::Ssh,
            "git" => Transport::Git,
            "file" => return Err(GitRepoError::LocalPath),
            other => return Err(GitRepoError::UnsupportedScheme(other.to_owned())),
        };
        // The URL parser forgives `https:///host/path`; git does not.
        if rest.is_empty() || rest.starts_with('/') {
            return Err(GitRepoError::MissingHost);
        }
        let url = url::Url::parse(input).map_err(|e| match e {
            url::ParseError::EmptyHost => GitRepoError::MissingHost,
            other => GitRepoError::Malformed(other.to_string()),
        })?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(GitRepoError::MissingHost);
        }
        if url.password().is_some() {
            return Err(GitRepoError::EmbeddedPassword);
        }
        if url.path().trim_matches('/').is_empty() {
            return Err(GitRepoError::MissingPath);
        }
        Ok(Self { raw: input.to_owned(), transport })
    }

    /// scp-like syntax: `user@host:path`, where no `/` comes before the first `:`.
    fn parse_scp_like(input: &str) -> Result<Self, GitRepoError> {
        let Some((user_host, path)) = input.split_once(':') else {
            return Err(GitRepoError::LocalPath);
        };
        if user_host.contains('/') {
            return Err(GitRepoError::LocalPath);
        }
        let Some((user, host)) = user_host.split_once('@') else {
            // `host:path` without a user is ambiguous with local paths such as `C:repo`.
            return Err(GitRepoError::LocalPath);
        };
        let user_ok =
            !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        let host_ok = !host.is_empty()
            && !host.starts_with(['-', '.'])
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        if !user_ok {
            return Err(GitRepoError::Malformed(format!("user \"{user}\" of user@host:path")));
        }
        if !host_ok {
            return Err(GitRepoError::MissingHost);
        }
        if path.trim_matches('/').is_empty() {
            return Err(GitRepoError::MissingPath);
        }
        Ok(Self { raw: input.to_owned(), transport: Transport::Ssh })
    }

    /// The remote as written.
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
}

/// Checks a branch, tag or commit name the way `git check-ref-format` would, plus the rules that keep it
/// from being read as an option.
///
/// # Errors
/// Returns a message saying what is wrong with the name.
pub fn check_ref(name: &str) -> Result<(), String> {
    const FORBIDDEN: [char; 7] = ['~', '^', ':', '?', '*', '[', '\\'];
    if name.is_empty() {
        return Err("must not be empty; leave it out to serve the remote's default branch".into());
    }
    let len = name.chars().count();
    if len > REF_MAX_LEN {
        return Err(format!("must be at most {REF_MAX_LEN} characters, got {len}"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain white space or control characters".into());
    }
    if name.starts_with('-') {
        return Err("must not start with '-'".into());
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN.contains(c)) {
        return Err(format!("must not contain '{c}'"));
    }
    if name.contains("..") || name.contains("@{") || name.contains("//") {
        return Err("must not contain \"..\", \"@{\" or \"//\"".into());
    }
    if name.starts_with('/') || name.ends_with('/') || name.ends_with('.') || name.ends_with(".lock") {
        return Err("must not start or end with '/', or end with '.' or \".lock\"".into());
    }
    if name.split('/').any(|part| part.starts_with('.')) {
        return Err("no part of it may start with '.'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_remote_repositories() {
        let cases = [
            ("https://github.com/luksa/kubia-website-example.git", Transport::Https),
            ("HTTPS://github.com/luksa/kubia-website-example", Transport::Https),
            ("https://git.example.com:8443/team/site.git", Transport::Https),
            ("https://user@example.com/org/repo.git", Transport::Https),
            ("http://git.internal/site.git", Transport::Http),
            ("ssh://git@github.com/luksa/kubia-website-example.git", Transport::Ssh),
            ("ssh://git@example.com:2222/org/repo.git", Transport::Ssh),
            ("git://example.com/repo.git", Transport::Git),
            ("git@github.com:luksa/kubia-website-example.git", Transport::Ssh),
            ("deploy.bot@git.example.com:org/site", Transport::Ssh),
            ("https://[2001:db8::1]/repo.git", Transport::Https),
            ("https://10.0.0.7/repo.git", Transport::Https),
        ];
        for (input, transport) in cases {
            let repo = GitRepo::parse(input).unwrap_or_else(|e| panic!("{input:?} rejected: {e}"));
            assert_eq!(repo.transport(), transport, "{input}");
            assert_eq!(repo.as_str(), input);
        }
    }

    #[test]
    fn rejects_with_the_rule_that_was_broken() {
        let too_long = format!("https://example.com/{}", "a".repeat(GIT_REPO_MAX_LEN));
        let cases: Vec<(&str, GitRepoError)> = vec![
            ("", GitRepoError::Empty),
            ("   ", GitRepoError::Empty),
            (&too_long, GitRepoError::TooLong(GIT_REPO_MAX_LEN + 20)),
            ("https://example.com/my repo.git", GitRepoError::WhitespaceOrControl),
            ("https://example.com/repo.git\n", GitRepoError::WhitespaceOrControl),
            ("https://example.com/re\u{7}po.git", GitRepoError::WhitespaceOrControl),
            ("\thttps://example.com/repo.git", GitRepoError::WhitespaceOrControl),
            ("--upload-pack=touch /tmp/pwned", GitRepoError::WhitespaceOrControl),
            ("--upload-pack=/bin/evil", GitRepoError::LeadingDash),
            ("-oProxyCommand=evil@host:path", GitRepoError::LeadingDash),
            ("ext::sh", GitRepoError::TransportHelper("ext".into())),
            ("fd::17", GitRepoError::TransportHelper("fd".into())),
            ("file:///etc/passwd", GitRepoError::LocalPath),
            ("FILE:///srv/git/site.git", GitRepoError::LocalPath),
            ("ftp://example.com/repo.git", GitRepoError::UnsupportedScheme("ftp".into())),
            ("git+ssh://example.com/repo.git", GitRepoError::UnsupportedScheme("git+ssh".into())),
            ("/srv/git/site.git", GitRepoError::LocalPath),
            ("./site", GitRepoError::LocalPath),
            ("../site.git", GitRepoError::LocalPath),
            ("~/site.git", GitRepoError::LocalPath),
            ("site.git", GitRepoError::LocalPath),
            ("C:site", GitRepoError::LocalPath),
            ("https://", GitRepoError::MissingHost),
            ("https:///repo.git", GitRepoError::MissingHost),
            ("ssh://git@/repo.git", GitRepoError::MissingHost),
            ("git@:repo.git", GitRepoError::MissingHost),
            ("https://example.com", GitRepoError::MissingPath),
            ("https://example.com/", GitRepoError::MissingPath),
            ("git@example.com:", GitRepoError::MissingPath),
            ("https://user:hunter2@example.com/repo.git", GitRepoError::EmbeddedPassword),
            ("ssh://git:secret@example.com/repo.git", GitRepoError::EmbeddedPassword),
            ("https://:token@example.com/repo.git", GitRepoError::EmbeddedPassword),
        ];
        for (input, want) in cases {
            assert_eq!(GitRepo::parse(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn rejects_malformed_urls_and_users() {
        for input in ["https://exa mple.com/x", "https://example.com:99999/repo.git", "us er@host:path"] {
            assert!(GitRepo::parse(input).is_err(), "{input:?} accepted");
        }
        assert!(matches!(GitRepo::parse("https://example.com:99999/repo.git"), Err(GitRepoError::Malformed(_))));
        assert!(matches!(GitRepo::parse("u$er@host:repo"), Err(GitRepoError::Malformed(_))));
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
        assert_eq!(flagged("git@example.com:r.git"), Ok(false));
    }

    #[test]
    fn every_rejection_message_is_lowercase_and_specific() {
        let errors = [
            GitRepoError::Empty,
            GitRepoError::TooLong(3000),
            GitRepoError::WhitespaceOrControl,
            GitRepoError::LeadingDash,
            GitRepoError::TransportHelper("ext".into()),
            GitRepoError::UnsupportedScheme("ftp".into()),
            GitRepoError::LocalPath,
            GitRepoError::MissingHost,
            GitRepoError::MissingPath,
            GitRepoError::EmbeddedPassword,
            GitRepoError::Malformed("x".into()),
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(msg.starts_with(|c: char| c.is_lowercase()), "{msg}");
        }
        assert!(GitRepoError::TooLong(3000).to_string().contains("2048"));
        assert!(GitRepoError::UnsupportedScheme("ftp".into()).to_string().contains("\"ftp://\""));
    }

    #[test]
    fn accepts_branches_tags_and_commits() {
        for name in
            ["main", "HEAD", "v1.2.3", "release/2024-10", "feature/x_y", "0123456789abcdef0123456789abcdef01234567"]
        {
            assert_eq!(check_ref(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_ref_names_git_would_refuse_or_misread() {
        let cases = [
            ("", "must not be empty"),
            ("-main", "must not start with '-'"),
            ("feature branch", "white space"),
            ("main\n", "white space"),
            ("a..b", "\"..\""),
            ("a@{1}", "\"@{\""),
            ("a//b", "\"//\""),
            ("HEAD~1", "'~'"),
            ("HEAD^", "'^'"),
            ("a:b", "':'"),
            ("a?b", "'?'"),
            ("a*", "'*'"),
            ("a[b", "'['"),
            ("a\\b", "'\\'"),
            ("/main", "start or end with '/'"),
            ("main/", "start or end with '/'"),
            ("main.", "end with '.'"),
            ("main.lock", ".lock"),
            (".hidden", "start with '.'"),
            ("a/.b", "start with '.'"),
        ];
        for (name, want) in cases {
            let err = check_ref(name).expect_err(name);
            assert!(err.contains(want), "{name:?}: {err:?} lacks {want:?}");
        }
        let long = "a".repeat(REF_MAX_LEN + 1);
        assert!(check_ref(&long).expect_err("too long").contains("at most 255"));
    }
}
