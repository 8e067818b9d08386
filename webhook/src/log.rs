//! Caller-supplied strings on their way into log lines: bounded and escaped, so that a request cannot forge log
//! lines (a newline in a name) or flood the log (a megabyte in a uid).

use std::fmt;

/// Characters of a caller-supplied string that reach a log line; the rest is counted, not printed.
pub const MAX_LOGGED_CHARS: usize = 128;

/// Displays a caller-supplied string with control and invisible characters escaped (`\n`, `\u{202e}`) and at
/// most [`MAX_LOGGED_CHARS`] characters, followed by how many were left out.
#[derive(Clone, Copy, Debug)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, c) in self.0.chars().enumerate() {
            if shown == MAX_LOGGED_CHARS {
                let left = self.0.chars().count() - shown;
                return write!(f, "…({left} more characters)");
            }
            if c.is_control() || (!c.is_ascii() && !c.is_alphanumeric() && !c.is_ascii_punctuation()) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        assert_eq!(Untrusted("kubia").to_string(), "kubia");
        assert_eq!(Untrusted("a\nb").to_string(), "a\\u{a}b");
        assert_eq!(Untrusted("x\u{202e}y").to_string(), "x\\u{202e}y");
        assert_eq!(Untrusted("\u{1b}[31mred").to_string(), "\\u{1b}[31mred");
        assert_eq!(Untrusted("café").to_string(), "café");
    }

    #[test]
    fn long_strings_are_cut_and_say_how_much_was_left_out() {
        let long = "a".repeat(1_000_000);
        let shown = Untrusted(&long).to_string();
        assert_eq!(shown, format!("{}…(999872 more characters)", "a".repeat(MAX_LOGGED_CHARS)));
        let exact = "b".repeat(MAX_LOGGED_CHARS);
        assert_eq!(Untrusted(&exact).to_string(), exact);
    }
}
