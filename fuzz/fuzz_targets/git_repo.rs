//! Any string as `spec.gitRepo` (and as `spec.ref`).
//!
//! Properties of an accepted remote, beyond "nothing panics":
//! - it is kept exactly as written, and parsing what it keeps gives the same remote;
//! - nothing that git or ssh would read as an option: neither the remote, its user, its host, nor the first
//!   segment of its path (as written, and percent-decoded as git decodes `ssh://` and `git://` URLs) starts
//!   with `-`;
//! - its parts are parts of the input: the host as written, the path as its end.

#![no_main]

use libfuzzer_sys::fuzz_target;
use website_crd::git::{GitRepo, check_ref};

fuzz_target!(|input: &str| {
    let _ = check_ref(input);
    let Ok(repo) = GitRepo::parse(input) else {
        return;
    };
    assert_eq!(repo.as_str(), input, "an accepted remote is kept as written");
    assert_eq!(GitRepo::parse(repo.as_str()).as_ref(), Ok(&repo), "parsing an accepted remote again gives it back");

    assert!(!input.starts_with('-'), "accepted a remote that starts with '-'");
    if let Some(user) = repo.user() {
        assert!(!user.starts_with('-'), "accepted user {user:?}, which starts with '-'");
    }
    assert!(!repo.host().starts_with('-'), "accepted host {:?}, which starts with '-'", repo.host());
    let path = repo.path();
    for first in [first_segment(path), &percent_decode(first_segment(path))] {
        assert!(!first.starts_with('-'), "accepted path {path:?}, whose first segment {first:?} starts with '-'");
    }

    assert!(!repo.host().is_empty(), "accepted a remote without a host");
    assert!(input.contains(repo.host()), "host {:?} is not in the input", repo.host());
    assert!(!path.trim_matches('/').is_empty(), "accepted a remote without a path");
    assert!(input.ends_with(path), "path {path:?} is not the end of the input");
    assert_ne!(repo.port(), Some(0), "accepted port 0");
});

/// The path's first segment, leading slashes left out: what git, ssh or a shell would see first.
fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or_default()
}

/// Decodes `%XX` as git's `url_decode` does, written apart from the parser's own decoder.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match hex {
            Some(hex) if bytes[i] == b'%' => {
                let hex = std::str::from_utf8(hex).expect("hex digits are ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits make a byte"));
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
