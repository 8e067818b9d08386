//! `spec.ref` accepts exactly what `git check-ref-format --allow-onelevel` accepts, except names that start
//! with `-` and names longer than `REF_MAX_LEN`: checked against the real git, which must be on PATH (CI
//! installs it; without it these tests fail rather than pass unchecked).

use std::process::Command;

use website_crd::REF_MAX_LEN;
use website_crd::git::check_ref;

/// Whether git accepts `name` as a ref name.
fn git_accepts(name: &str) -> bool {
    let out = Command::new("git")
        .args(["check-ref-format", "--allow-onelevel", name])
        .output()
        .unwrap_or_else(|e| panic!("git must be on PATH to check ref names against it: {e}"));
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => {
            panic!("git check-ref-format {name:?} exited with {other:?}: {}", String::from_utf8_lossy(&out.stderr))
        }
    }
}

/// Asks git about every name, a few at a time in parallel.
fn git_verdicts(names: &[&str]) -> Vec<bool> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let chunk = names.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = names
            .chunks(chunk)
            .map(|chunk| scope.spawn(move || chunk.iter().map(|name| git_accepts(name)).collect::<Vec<_>>()))
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a git worker panicked")).collect()
    })
}

/// Asserts that `check_ref` and git agree on every name git can be asked about, and that `check_ref` refuses
/// the others. Returns how many names git accepted.
fn assert_check_ref_agrees_with_git(names: &[String]) -> usize {
    let (askable, others): (Vec<&str>, Vec<&str>) =
        names.iter().map(String::as_str).partition(|n| !n.starts_with('-') && n.chars().count() <= REF_MAX_LEN);
    // git would read a leading '-' as an option; our rule refuses it, as it refuses overly long names.
    for name in others {
        assert!(check_ref(name).is_err(), "{name:?} accepted");
    }
    let verdicts = git_verdicts(&askable);
    let disagreements: Vec<String> = askable
        .iter()
        .zip(&verdicts)
        .filter(|&(name, &git)| check_ref(name).is_ok() != git)
        .map(|(name, &git)| {
            format!("{name:?}: git {}, check_ref {:?}", if git { "accepts" } else { "refuses" }, check_ref(name))
        })
        .collect();
    assert!(disagreements.is_empty(), "check_ref disagrees with git about:\n{}", disagreements.join("\n"));
    verdicts.into_iter().filter(|&accepted| accepted).count()
}

#[test]
fn check_ref_agrees_with_git_on_tricky_names() {
    let short = [
        "main", "HEAD", "v1.2.3", "x-", "a-b", "@", "@@", "a@", "@a", "a@b", "@/a", "a/@", "@{", "a@{", "a@{1}",
        "@{u}", "{", "a{b}", "}", "a.lock/b", "a/b.lock", "a.lock", ".lock", "a/.lock", "lock", "a.lockx", "a.lock.b",
        "a..lock", "A.LOCK", ".a", "a/.b", "a.", "a/b.", "a./b", "a/.", ".", "..", "a..b", "a/../b", "a/./b", "/a",
        "a/", "a//b", "/", "//", "a b", " ", "a\tb", "a\nb", "a\u{7f}", "\u{7f}", "\u{1}", "\u{a0}", "a\u{a0}b",
        "\u{85}", "\u{2028}", "é", "日本", "a~b", "a^b", "a:b", "a?b", "a*b", "*", "a[b", "a]b", "a\\b", "a!b", "a\"b",
        "a#b", "a$b", "a%b", "a&b", "a'b", "a(b", "a)b", "a+b", "a,b", "a;b", "a<b", "a=b", "a>b", "a`b", "a|b", "a}b",
        "~", "^", ":", "?", "[", "\\", "-", "-a", "--orphan", "",
    ];
    let longer =
        ["release/2024-10", "refs/heads/main", "feature/x_y", "0123456789abcdef0123456789abcdef01234567", "\u{202e}x"];
    let generated = ["0123456789abcdef".repeat(4), "a".repeat(REF_MAX_LEN), "a".repeat(REF_MAX_LEN + 1)];
    let names: Vec<String> = short.iter().chain(&longer).map(|n| (*n).to_owned()).chain(generated).collect();
    assert_check_ref_agrees_with_git(&names);
}

/// A small deterministic generator (xorshift64*), so that a failure can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below n fits in usize")
    }
}

#[test]
fn check_ref_agrees_with_git_on_thousands_of_generated_names() {
    // The pieces git's rules are about come often; the characters it always refuses come less often, so that
    // many names pass and the rules about '.', '/', '@{' and ".lock" are exercised.
    const COMMON: [&str; 14] = [".", "/", "@", "{", "-", "l", "o", "c", "k", "a", "\u{a0}", ".lock", "@{", ".."];
    const REFUSED: [&str; 10] = ["~", "^", ":", "?", "*", "[", "\\", " ", "\u{7f}", "\t"];
    let mut rng = Rng(0x0005_eed0_f9e7_c4ec);
    let mut names = std::collections::BTreeSet::new();
    while names.len() < 3000 {
        let len = 1 + rng.below(8);
        let name: String = (0..len)
            .map(
                |_| if rng.below(8) == 0 { REFUSED[rng.below(REFUSED.len())] } else { COMMON[rng.below(COMMON.len())] },
            )
            .collect();
        names.insert(name);
    }
    let names: Vec<String> = names.into_iter().collect();
    let accepted = assert_check_ref_agrees_with_git(&names);
    assert!(
        accepted >= 300,
        "only {accepted} of {} generated names are valid refs: the test would check little",
        names.len()
    );
}
