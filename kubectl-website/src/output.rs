//! Output: kubectl-style tables, ages, and the JSON and YAML forms.

use std::fmt::Write as _;

use serde::Serialize;

/// How a command prints what it found (`-o`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Columns, as `kubectl get` prints them.
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Columns separated by three spaces, each as wide as its widest cell, with trailing spaces trimmed: the layout of
/// `kubectl get`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            let _ = write!(line, "{cell:<width$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An age as kubectl prints it: `45s`, `12m`, `5h`, `3d`; `<unknown>` without a time.
pub fn age(seconds: Option<i64>) -> String {
    let Some(seconds) = seconds.map(|s| s.max(0)) else {
        return "<unknown>".to_owned();
    };
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Seconds since `time`, by the local clock.
pub fn seconds_since(time: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<i64> {
    time.map(|t| k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second())
}

/// `value` as JSON (pretty) or YAML.
///
/// # Errors
/// When it does not serialize (it always does for Kubernetes objects).
pub fn structured<T: Serialize>(value: &T, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Yaml => serde_yaml_ng::to_string(value)?,
        _ => serde_json::to_string_pretty(value)? + "\n",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_columns_like_kubectl() {
        let rows = vec![
            vec!["kubia".to_owned(), "True".to_owned(), "3m".to_owned()],
            vec!["a-much-longer-name".to_owned(), "".to_owned(), "2d".to_owned()],
        ];
        assert_eq!(
            table(&["NAME", "READY", "AGE"], &rows),
            "NAME                 READY   AGE\n\
             kubia                True    3m\n\
             a-much-longer-name           2d\n"
        );
    }

    #[test]
    fn ages_read_like_kubectls() {
        let cases = [(Some(5), "5s"), (Some(119), "119s"), (Some(120), "2m"), (Some(7199), "119m"), (Some(7200), "2h")];
        for (seconds, want) in cases {
            assert_eq!(age(seconds), want);
        }
        assert_eq!(age(Some(3 * 86400 + 5)), "3d");
        assert_eq!(age(Some(-4)), "0s");
        assert_eq!(age(None), "<unknown>");
    }
}
