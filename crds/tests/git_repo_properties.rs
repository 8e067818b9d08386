//! Properties of `spec.gitRepo`: whatever `GitRepo::parse` accepts, git, ssh and curl read as the remote the
//! parser saw, and never as an option.
//!
//! The model below follows what git's `transport.c` and `connect.c` do with a remote, and what curl does with
//! an `https://` URL. It is written independently of the parser, and `the_model_reads_remotes_as_git_does`
//! checks it against `git fetch-pack --diag-url`, git's own account of how it splits a remote (git must be
//! on PATH; CI installs it).

use std::process::Command;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use website_crd::git::{GitRepo, Transport};

// ---------------------------------------------------------------------------------------------------------
// The model

/// How git fetches a remote (`transport_get` in transport.c).
#[derive(Debug, PartialEq, Eq)]
enum GitTransport {
    /// `git_connect`: ssh, the git protocol, or a local path.
    Connect,
    /// A remote helper named after the URL scheme, such as `git-remote-https` (curl).
    Helper(String),
}

/// `is_urlschemechar` in url.c.
fn is_url_scheme_char(first: bool, b: u8) -> bool {
    b.is_ascii_alphanumeric() || (!first && matches!(b, b'+' | b'-' | b'.'))
}

/// `is_url` in url.c: a scheme, then "://".
fn git_is_url(s: &[u8]) -> bool {
    match s.split_first() {
        Some((&first, rest)) if is_url_scheme_char(true, first) => {
            let colon = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
            rest[..colon].iter().all(|&b| is_url_scheme_char(false, b)) && rest[colon..].starts_with(b"://")
        }
        _ => false,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `transport_get`: a `helper::address` goes to that helper, a URL whose scheme git does not speak itself goes
/// to the helper named after the scheme, everything else to `git_connect`.
fn git_transport(remote: &[u8]) -> GitTransport {
    let helper_len = remote.iter().enumerate().take_while(|&(i, &b)| is_url_scheme_char(i == 0, b)).count();
    if remote[helper_len..].starts_with(b"::") {
        return GitTransport::Helper(String::from_utf8_lossy(&remote[..helper_len]).into_owned());
    }
    let builtin = ["file://", "git://", "ssh://", "git+ssh://", "ssh+git://"];
    if !git_is_url(remote) || builtin.iter().any(|p| remote.starts_with(p.as_bytes())) {
        return GitTransport::Connect;
    }
    let scheme = &remote[..find(remote, b"://").unwrap_or(0)];
    GitTransport::Helper(String::from_utf8_lossy(scheme).into_owned())
}

/// `url_decode` in url.c: everything before the first ':' is kept, then every `%XX` with a non-zero value is
/// decoded.
fn git_url_decode(url: &[u8]) -> Vec<u8> {
    let colon = url.iter().position(|&b| b == b':').filter(|&c| c > 0).unwrap_or(0);
    let mut out = url[..colon].to_vec();
    let mut i = colon;
    while i < url.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        let value = match (url[i], url.get(i + 1).copied().and_then(hex), url.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) if high * 16 + low > 0 => u8::try_from(high * 16 + low).ok(),
            _ => None,
        };
        match value {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(url[i]);
                i += 1;
            }
        }
    }
    out
}

/// What `parse_connect_url` in connect.c returns: the protocol, the `[user@]host[:port]` part and the path.
#[derive(Debug)]
struct Connect {
    protocol: &'static str,
    host_and_port: Vec<u8>,
    path: Vec<u8>,
}

/// `host_end(&host, 0)`: where to look for the separator after the host: at the ']' of a bracketed host,
/// found after the first "@[" anywhere in the string, or else at the start.
fn host_end(host: &[u8]) -> usize {
    let start = find(host, b"@[").map_or(0, |at| at + 1);
    match host.get(start) {
        Some(b'[') => host[start + 1..].iter().position(|&b| b == b']').map_or(0, |close| start + 1 + close),
        _ => 0,
    }
}

/// `parse_connect_url`; `None` where git would die.
fn git_parse_connect_url(remote: &[u8]) -> Option<Connect> {
    let url = if git_is_url(remote) { git_url_decode(remote) } else { remote.to_vec() };
    let (protocol, host_start, separator) = match find(&url, b"://") {
        Some(at) => {
            let protocol = match &url[..at] {
                b"ssh" | b"git+ssh" | b"ssh+git" => "ssh",
                b"git" => "git",
                _ => return None,
            };
            (protocol, at + 3, b'/')
        }
        None => {
            // `url_is_local_not_ssh` (on other systems than Windows, which also has drive letters).
            let colon = url.iter().position(|&b| b == b':');
            let slash = url.iter().position(|&b| b == b'/');
            let local = match (colon, slash) {
                (Some(colon), Some(slash)) => slash < colon,
                (colon, _) => colon.is_none(),
            };
            if local {
                let end = host_end(&url);
                let path = url[end..].to_vec();
                return (!path.is_empty()).then(|| Connect {
                    protocol: "file",
                    host_and_port: url[..end].to_vec(),
                    path,
                });
            }
            ("ssh", 0, b':')
        }
    };
    let host = &url[host_start..];
    let end = host_end(host);
    let path_at = end + host[end..].iter().position(|&b| b == separator)?;
    let mut path = &host[path_at..];
    if separator == b':' {
        path = &path[1..];
    }
    if path.get(1) == Some(&b'~') {
        path = &path[1..];
    }
    Some(Connect { protocol, host_and_port: host[..path_at].to_vec(), path: path.to_vec() })
}

/// Whether `strtol` reads all of `s` as a number from 0 to 65535, as `get_host_and_port` and `get_port`
/// require of a port.
fn strtol_port(s: &[u8]) -> bool {
    let s = &s[s.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let value = digits.iter().try_fold(0u32, |n, &d| n.checked_mul(10)?.checked_add(u32::from(d - b'0')));
    value == Some(0) || (!negative && value.is_some_and(|v| v < 65536))
}

/// `get_host_and_port`: removes the brackets of a bracketed host and splits off a port.
fn git_get_host_and_port(host_and_port: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let start = find(host_and_port, b"@[").map_or(0, |at| at + 1);
    if host_and_port.get(start) == Some(&b'[')
        && let Some(close) = host_and_port[start + 1..].iter().position(|&b| b == b']').map(|c| start + 1 + c)
    {
        let mut host = host_and_port[..start].to_vec();
        host.extend_from_slice(&host_and_port[start + 1..close]);
        let tail = &host_and_port[close + 1..];
        let port = tail.iter().position(|&b| b == b':').map(|c| &tail[c + 1..]).filter(|p| strtol_port(p));
        return (host, port.map(<[u8]>::to_vec));
    }
    match host_and_port.iter().position(|&b| b == b':') {
        Some(colon) if strtol_port(&host_and_port[colon + 1..]) => {
            (host_and_port[..colon].to_vec(), Some(host_and_port[colon + 1..].to_vec()))
        }
        Some(colon) if colon + 1 == host_and_port.len() => (host_and_port[..colon].to_vec(), None),
        _ => (host_and_port.to_vec(), None),
    }
}

/// `get_port`: a port after the first ':' of what is left, tried when `get_host_and_port` found none.
fn git_get_port(host: Vec<u8>) -> (Vec<u8>, Option<Vec<u8>>) {
    match host.iter().position(|&b| b == b':') {
        Some(colon) if strtol_port(&host[colon + 1..]) => (host[..colon].to_vec(), Some(host[colon + 1..].to_vec())),
        _ => (host, None),
    }
}

/// What reaches ssh, a TCP connection or curl.
#[derive(Debug)]
struct Reached {
    /// The argument ssh is given for the host (`user@host`), or the host.
    destination: String,
    user: Option<String>,
    host: String,
    port: Option<String>,
    path: String,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What git makes of a remote it fetches through `git_connect`: for ssh, `user@host` goes to ssh as one
/// argument, and ssh takes the user from before its last '@'.
fn reached_by_git(remote: &[u8]) -> Option<Reached> {
    let connect = git_parse_connect_url(remote).filter(|c| c.protocol != "file")?;
    let (host, port) = git_get_host_and_port(&connect.host_and_port);
    let path = text(&connect.path);
    if connect.protocol == "git" {
        let host = text(&host);
        return Some(Reached { destination: host.clone(), user: None, host, port: port.map(|p| text(&p)), path });
    }
    let (destination, port) = if port.is_some() { (host, port) } else { git_get_port(host) };
    let destination = text(&destination);
    let (user, host) = match destination.rsplit_once('@') {
        Some((user, host)) => (Some(user.to_owned()), host.to_owned()),
        None => (None, destination.clone()),
    };
    Some(Reached { destination, user, host, port: port.map(|p| text(&p)), path })
}

/// What curl makes of an `http://` or `https://` URL, which it does not percent-decode: the authority ends at
/// the first '/', the user is before the first '@' and ':', a bracketed host is an IPv6 address.
fn reached_by_curl(remote: &str) -> Option<Reached> {
    let (_, rest) = remote.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (user, host_port) = match authority.split_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo.split(':').next().unwrap_or(userinfo).to_owned()), host_port),
        None => (None, authority),
    };
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    Some(Reached {
        destination: host.to_owned(),
        user,
        host: host.to_owned(),
        port: port.map(str::to_owned),
        path: path.to_owned(),
    })
}

fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or_default()
}

/// The property: git (or curl) fetches an accepted remote the way the parser read it, from the host the parser
/// checked, and no part of it can be read as an option.
fn check_accepted(remote: &str, repo: &GitRepo) -> Result<(), TestCaseError> {
    let reached = match (git_transport(remote.as_bytes()), repo.transport()) {
        (GitTransport::Connect, Transport::Ssh | Transport::Git) => reached_by_git(remote.as_bytes()),
        (GitTransport::Helper(scheme), Transport::Https | Transport::Http)
            if Some(scheme.as_str()) == repo.scheme() =>
        {
            reached_by_curl(remote)
        }
        (transport, _) => return Err(TestCaseError::fail(format!("git fetches {remote:?} through {transport:?}"))),
    };
    let Some(r) = reached else {
        return Err(TestCaseError::fail(format!("git does not read {remote:?} as a remote")));
    };
    let option = |part: &str| part.starts_with('-');
    prop_assert!(!option(&r.destination), "{remote:?}: ssh would read {:?} as an option", r.destination);
    prop_assert!(!r.user.as_deref().is_some_and(option), "{remote:?}: user {:?}", r.user);
    prop_assert!(!r.host.is_empty() && !option(&r.host), "{remote:?}: host {:?}", r.host);
    prop_assert!(
        !r.host.contains(['@', '/']) && !r.host.contains(char::is_whitespace),
        "{remote:?}: host {:?}",
        r.host
    );
    prop_assert!(!r.port.as_deref().is_some_and(option), "{remote:?}: port {:?}", r.port);
    prop_assert!(!option(&r.path) && !option(first_segment(&r.path)), "{remote:?}: path {:?}", r.path);
    prop_assert_eq!(r.host.as_str(), repo.host(), "{:?}: the host reached is not the host checked", remote);
    prop_assert_eq!(r.user.as_deref(), repo.user(), "{:?}: the user", remote);
    let port = r.port.as_deref().map(|p| p.parse::<u16>().map_err(|_| p.to_owned()));
    prop_assert_eq!(port, repo.port().map(Ok), "{:?}: the port", remote);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// The inputs

/// Pieces of remotes, biased to those that confuse parsers: dashes, '@', ':', brackets and their
/// percent-encodings, numeric and local hosts.
const FRAGMENTS: [&str; 44] = [
    "-",
    "-",
    "@",
    "@",
    ":",
    ":",
    "[",
    "]",
    "%2D",
    "%2d",
    "%40",
    "%3A",
    "%5B",
    "%5D",
    "%25",
    "/",
    "/",
    "//",
    "0",
    "1",
    "22",
    "2222",
    "9",
    "ssh://",
    "git://",
    "https://",
    "http://",
    "localhost",
    "127.1",
    "0x7f.1",
    "::1",
    "2001:db8::1",
    "git@",
    "a",
    "b",
    "h",
    "example.com",
    "org",
    "repo.git",
    "~",
    ".",
    "_",
    "x-y",
    "%2F",
];

fn pieces(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(select(&FRAGMENTS[..]), 0..max).prop_map(|parts| parts.concat())
}

/// A part of a remote: `min..max` pieces, most of them ordinary (`usual`), the others from [`FRAGMENTS`].
fn part(usual: &'static [&'static str], min: usize, max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![3 => select(usual), 1 => select(&FRAGMENTS[..])];
    prop::collection::vec(piece, min..max).prop_map(|parts| parts.concat())
}

/// Remotes shaped like `[scheme://][user@]host[:port](/ or :)path`, each part mostly ordinary with dangerous
/// pieces mixed in, or plain runs of fragments.
fn remotes() -> impl Strategy<Value = String> {
    const USERS: &[&str] = &["git", "deploy.bot", "oauth2", "a"];
    const HOSTS: &[&str] = &["example.com", "h", "gitea", "git.ns.svc.cluster.local", "10.0.0.7", "a", "."];
    const IPV6: &[&str] = &["2001:db8::1", "::1", "fe80::1", "::ffff:10.0.0.7", "::", "1", ":"];
    const PORTS: &[&str] = &["22", "2222", "1", "0"];
    const PATHS: &[&str] = &["org", "/", "repo.git", "a", "~", "x-y", "-", "."];
    let host = prop_oneof![
        3 => part(HOSTS, 1, 3),
        1 => part(IPV6, 1, 3).prop_map(|inner| format!("[{inner}]")),
    ];
    let shaped = (
        select(&["ssh://", "git://", "https://", "http://", ""][..]),
        prop::option::of(part(USERS, 1, 3)),
        host,
        prop::option::of(part(PORTS, 1, 2)),
        part(PATHS, 1, 5),
    )
        .prop_map(|(scheme, user, host, port, path)| {
            let mut remote = scheme.to_owned();
            if let Some(user) = user {
                remote += &format!("{user}@");
            }
            remote += &host;
            if let Some(port) = port.filter(|_| !scheme.is_empty()) {
                remote += &format!(":{port}");
            }
            remote += if scheme.is_empty() { ":" } else { "/" };
            remote + &path
        });
    prop_oneof![3 => shaped, 1 => pieces(12)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn no_accepted_remote_reaches_another_host_or_reads_as_an_option(remote in remotes()) {
        if let Ok(repo) = GitRepo::parse(&remote) {
            check_accepted(&remote, &repo)?;
        }
    }

    #[test]
    fn parsing_an_accepted_remote_again_gives_the_same_remote(remote in remotes()) {
        if let Ok(repo) = GitRepo::parse(&remote) {
            prop_assert_eq!(GitRepo::parse(repo.as_str()), Ok(repo.clone()));
            prop_assert_eq!(repo.as_str(), remote.as_str());
        }
    }

    #[test]
    fn parse_never_panics_on_printable_strings(remote in "\\PC*") {
        let _ = GitRepo::parse(&remote);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = GitRepo::parse(&String::from_utf8_lossy(&bytes));
    }
}

/// `count` remotes from the strategy, the same on every run.
fn sample_remotes(count: usize) -> Vec<String> {
    let mut runner = TestRunner::deterministic();
    let strategy = remotes();
    (0..count).map(|_| strategy.new_tree(&mut runner).expect("the strategy generates remotes").current()).collect()
}

#[test]
fn many_generated_remotes_are_accepted_so_the_properties_check_something() {
    let remotes = sample_remotes(2000);
    let accepted: Vec<_> = remotes.iter().filter(|r| GitRepo::parse(r).is_ok()).collect();
    assert!(accepted.len() >= 200, "only {} of 2000 generated remotes are accepted", accepted.len());
    for scheme in ["ssh://", "git://", "https://", "http://"] {
        assert!(accepted.iter().any(|r| r.starts_with(scheme)), "no accepted {scheme} remote");
    }
    assert!(accepted.iter().any(|r| !r.contains("://")), "no accepted scp-like remote");
}

/// The known-bad remotes the model must catch: each would reach another host or pass an option if it were
/// accepted, so the property would fail for it.
#[test]
fn the_model_catches_remotes_that_reach_another_host_or_read_as_an_option() {
    for (remote, transport, host) in [
        ("ssh://h%40evil.example/repo.git", Transport::Ssh, "h%40evil.example"),
        ("ssh://%2DoProxyCommand=x@h/repo.git", Transport::Ssh, "h"),
        ("ssh://h/a@[evil.example]/repo.git", Transport::Ssh, "h"),
        ("git://u@h/repo.git", Transport::Git, "h"),
        ("ssh://h/%2Drepo.git", Transport::Ssh, "h"),
        ("git@h:-repo.git", Transport::Ssh, "h"),
        ("https://-h/repo.git", Transport::Https, "-h"),
    ] {
        let reached = match transport {
            Transport::Https | Transport::Http => reached_by_curl(remote),
            Transport::Ssh | Transport::Git => reached_by_git(remote.as_bytes()),
        }
        .unwrap_or_else(|| panic!("{remote:?} not read as a remote"));
        let safe = !reached.destination.starts_with('-')
            && !reached.user.as_deref().is_some_and(|u| u.starts_with('-'))
            && !reached.host.starts_with('-')
            && !reached.host.contains(['@', '/'])
            && !reached.path.starts_with('-')
            && !first_segment(&reached.path).starts_with('-')
            && reached.host == host;
        assert!(!safe, "{remote:?}: the model sees nothing wrong with {reached:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// The model against git itself

/// A bare repository for `git fetch-pack`, which wants one even for `--diag-url`; removed on drop.
struct ScratchRepo(std::path::PathBuf);

impl ScratchRepo {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("website-crd-diag-url-{}", std::process::id()));
        let out = Command::new("git")
            .args(["init", "--quiet", "--bare"])
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("git must be on PATH to check the model against it: {e}"));
        assert!(out.status.success(), "git init: {}", String::from_utf8_lossy(&out.stderr));
        Self(dir)
    }

    /// git's account of a remote: the `Diag:` lines of `git fetch-pack --diag-url` other than `url=`, or `None`
    /// when git refuses the remote.
    fn diag(&self, remote: &str) -> Option<Vec<String>> {
        let out = Command::new("git")
            .env("GIT_DIR", &self.0)
            .args(["fetch-pack", "--diag-url", remote])
            .output()
            .unwrap_or_else(|e| panic!("git fetch-pack: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines = stdout.lines().filter(|l| !l.starts_with("Diag: url=")).map(str::to_owned).collect();
        out.status.success().then_some(lines)
    }
}

impl Drop for ScratchRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The model's account of a remote, in the words of `git fetch-pack --diag-url`.
fn model_diag(remote: &str) -> Option<Vec<String>> {
    let connect = git_parse_connect_url(remote.as_bytes())?;
    // `git_connect` dies before it explains a remote whose path looks like an option.
    if connect.path.starts_with(b"-") {
        return None;
    }
    if connect.protocol != "ssh" {
        return Some(vec![
            format!("Diag: protocol={}", connect.protocol),
            format!("Diag: hostandport={}", text(&connect.host_and_port)),
            format!("Diag: path={}", text(&connect.path)),
        ]);
    }
    let r = reached_by_git(remote.as_bytes())?;
    Some(vec![
        "Diag: protocol=ssh".into(),
        format!("Diag: userandhost={}", r.destination),
        format!("Diag: port={}", r.port.as_deref().unwrap_or("NONE")),
        format!("Diag: path={}", r.path),
    ])
}

#[test]
fn the_model_reads_remotes_as_git_does() {
    let repo = ScratchRepo::new();
    let table = [
        "ssh://git@github.com/org/repo.git",
        "ssh://git@example.com:2222/org/repo.git",
        "ssh://git@[2001:db8::1]:2222/r.git",
        "ssh://[::1]:22/r",
        "ssh://h:/r",
        "ssh://h:abc/r",
        "ssh://h:-1/r",
        "ssh://h:022/r",
        "ssh://a@b@h/r",
        "ssh://h%40evil/r",
        "ssh://h/%2Dr",
        "ssh://h/~-x",
        "ssh://h/a@[b]/c",
        "ssh://-oX@h/r",
        "ssh://[h]/r",
        "git://h/%2Fx",
        "git://u@h/r",
        "git://h:9418/r",
        "git@github.com:org/repo.git",
        "git@[2001:db8::1]:org/repo.git",
        "[h:22]:path",
        "git@h:a@[b]/c",
        "git@h:/-r",
        "git@h:~x",
        "h:a~b",
        "h:22:r",
        "h:p",
        "ssh://h",
        "ftp://h/r",
    ];
    let generated = sample_remotes(400);
    let remotes = table.iter().copied().chain(
        // git would read a leading '-' as an option; curl's URLs are not git's to explain.
        generated.iter().map(String::as_str).filter(|r| !r.starts_with('-') && !r.starts_with("http")).take(250),
    );
    let mut disagreements = Vec::new();
    for remote in remotes {
        let (git, model) = (repo.diag(remote), model_diag(remote));
        if git != model {
            disagreements.push(format!("{remote:?}:\n  git:   {git:?}\n  model: {model:?}"));
        }
    }
    assert!(disagreements.is_empty(), "the model disagrees with git:\n{}", disagreements.join("\n"));
}
