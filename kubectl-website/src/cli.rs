//! The command line: kubectl's global flags, the commands, and what runs each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::client::{Connection, Target};
use crate::commands::{self, CreateArgs, WaitFor};
use crate::error::{Failure, Result};
use crate::output::{Format, structured};
use crate::validate::{Report, validate_text};

/// Create, list, inspect, wait for and delete Websites, and validate Website manifests offline.
///
/// Exit codes: 0 success; 1 an invalid Website, a failed wait, or another refusal by the API server (not found,
/// forbidden); 2 bad usage, unreadable input, or a cluster that cannot be reached.
#[derive(Parser, Debug)]
#[command(name = "kubectl-website", bin_name = "kubectl website", version)]
pub struct Cli {
    /// Where the cluster is.
    #[command(flatten)]
    pub target: Target,

    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a Website, after checking it with the webhook's rules.
    Create(CreateArgs),
    /// List Websites: name, repository, ref, ready, URL and age.
    #[command(visible_alias = "ls")]
    List {
        /// Websites of every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// A Website's conditions, children, recent events, and what to do when it is not ready.
    Status {
        /// The Website.
        name: String,
    },
    /// Check Website manifests offline, as the webhooks would: defaults, then the CRD's schema and every rule.
    Validate {
        /// A file, a directory (its .yaml, .yml and .json files, recursively) or `-` for standard input;
        /// repeatable.
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE|DIR|-")]
        files: Vec<PathBuf>,
        /// Fail on warnings too (e.g. an unencrypted http:// repository).
        #[arg(long)]
        strict: bool,
    },
    /// Wait until a Website is ready (watching it, not polling).
    Wait {
        /// The Website.
        name: String,
        /// The condition.
        #[arg(long = "for", value_enum, default_value_t = WaitFor::Ready)]
        condition: WaitFor,
        /// How long to wait: e.g. 90s, 5m, 1h.
        #[arg(long, default_value = "5m", value_parser = commands::parse_duration)]
        timeout: Duration,
    },
    /// Delete a Website; its Deployment and Service go with it.
    Delete {
        /// The Website.
        name: String,
    },
    /// Print a shell completion script for `kubectl-website`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Completion for kubectl's plugin completion (`kubectl_complete-website` runs it): the words after
    /// `kubectl website`, the last one being completed.
    #[command(name = "__complete", hide = true)]
    Complete {
        /// The words.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        words: Vec<String>,
    },
}

/// Runs a parsed command line.
///
/// # Errors
/// Why the command failed; see [`Failure::exit_code`].
pub async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Validate { files, strict } => validate(files, *strict, cli.output),
        Command::Completion { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "kubectl-website", &mut std::io::stdout());
            Ok(())
        }
        Command::Complete { words } => {
            complete(&cli.target, words).await;
            Ok(())
        }
        Command::Create(args) if args.dry_run == Some(commands::DryRun::Client) => {
            // No cluster needed; the namespace is the flag's, else the kubeconfig's when there is one.
            let namespace = match &cli.target.namespace {
                Some(namespace) => namespace.clone(),
                None => Connection::open(&cli.target).await.map_or_else(|_| "default".to_owned(), |c| c.namespace),
            };
            commands::create(None, args, &namespace, cli.output).await
        }
        command => {
            let connection = Connection::open(&cli.target).await?;
            let namespace = connection.namespace.clone();
            match command {
                Command::Create(args) => commands::create(Some(&connection), args, &namespace, cli.output).await,
                Command::List { all_namespaces } => {
                    commands::list(&connection, &namespace, *all_namespaces, cli.output).await
                }
                Command::Status { name } => commands::status(&connection, &namespace, name, cli.output).await,
                Command::Wait { name, timeout, condition: WaitFor::Ready } => {
                    commands::wait(&connection, &namespace, name, *timeout).await
                }
                Command::Delete { name } => commands::delete(&connection, &namespace, name).await,
                Command::Validate { .. } | Command::Completion { .. } | Command::Complete { .. } => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

/// The files `path` names: itself, or a directory's manifests, sorted.
fn manifests(path: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    if path.as_os_str() == "-" || !path.is_dir() {
        found.push(path.to_owned());
        return Ok(());
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| Failure::Input(format!("cannot read {}: {e}", path.display())))?;
    let mut entries: Vec<(PathBuf, Option<std::fs::FileType>)> =
        entries.filter_map(|e| e.ok().map(|e| (e.path(), e.file_type().ok()))).collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (entry, kind) in entries {
        let manifest = entry.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json");
        // A directory's own subdirectories only: a symbolic link to a directory is not followed, so that a link to
        // a parent cannot make the walk endless.
        if kind.is_some_and(|k| k.is_dir()) {
            manifests(&entry, found)?;
        } else if manifest && entry.is_file() {
            found.push(entry);
        }
    }
    Ok(())
}

/// Largest manifest `validate` reads: far above any real one, and a bound on what a device or a pipe can make it hold.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// Reads at most [`MAX_MANIFEST_BYTES`] of UTF-8 text.
fn read_bounded(input: impl std::io::Read) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    input.take(MAX_MANIFEST_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(std::io::Error::other(format!("it is larger than {} MiB", MAX_MANIFEST_BYTES / 1024 / 1024)));
    }
    Ok(text)
}

/// `validate`: prints every finding, then a summary on standard error.
fn validate(paths: &[PathBuf], strict: bool, format: Format) -> Result<()> {
    let mut files = Vec::new();
    for path in paths {
        manifests(path, &mut files)?;
    }
    let mut report = Report::default();
    let mut unreadable_files = Vec::new();
    for file in &files {
        let text = if file.as_os_str() == "-" {
            read_bounded(std::io::stdin())
        } else {
            std::fs::File::open(file).and_then(read_bounded)
        };
        match text {
            Ok(text) => validate_text(&file.display().to_string(), &text, &mut report),
            Err(e) => unreadable_files.push(format!("cannot read {}: {e}", file.display())),
        }
    }
    match format {
        Format::Json | Format::Yaml => {
            print!("{}", structured(&report, format).map_err(|e| Failure::Input(e.to_string()))?)
        }
        Format::Table | Format::Wide => {
            for finding in report.unreadable.iter().chain(&report.violations) {
                println!("{finding}");
            }
            for warning in &report.warnings {
                println!("{warning} (warning)");
            }
        }
    }
    eprintln!(
        "{} Website(s) checked in {} file(s): {} violation(s), {} warning(s), {} other document(s) skipped",
        report.checked,
        files.len(),
        report.violations.len(),
        report.warnings.len(),
        report.skipped
    );
    if !unreadable_files.is_empty() || !report.unreadable.is_empty() {
        let mut reasons = unreadable_files;
        reasons.extend(report.unreadable.iter().map(ToString::to_string));
        return Err(Failure::Input(reasons.join("\n")));
    }
    if !report.violations.is_empty() {
        return Err(Failure::Invalid(format!("{} violation(s) found", report.violations.len())));
    }
    if strict && !report.warnings.is_empty() {
        return Err(Failure::Invalid(format!("{} warning(s) found, and --strict is given", report.warnings.len())));
    }
    Ok(())
}

/// Prints completions of the last of `words` in the format of kubectl's plugin completion (cobra's): one candidate
/// a line, then `:4` (no file completion).
async fn complete(target: &Target, words: &[String]) {
    let (last, before) = words.split_last().map_or(("", &[][..]), |(l, b)| (l.as_str(), b));
    let candidates: Vec<String> = match before {
        [] => Cli::command().get_subcommands().filter(|c| !c.is_hide_set()).map(|c| c.get_name().to_owned()).collect(),
        [command] if matches!(command.as_str(), "status" | "wait" | "delete") => match Connection::open(target).await {
            Ok(connection) => commands::names(&connection, &connection.namespace).await,
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    };
    for candidate in candidates.iter().filter(|c| c.starts_with(last)) {
        println!("{candidate}");
    }
    println!(":4");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_walk_takes_manifests_only_and_never_follows_a_link_back_up() {
        let dir = tempfile::tempdir().expect("a directory");
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).expect("sub");
        for file in ["a.yaml", "b.yml", "c.json", "notes.txt", "sub/d.yaml"] {
            std::fs::write(root.join(file), "").expect("written");
        }
        std::os::unix::fs::symlink(root, root.join("sub/loop")).expect("a link to the parent");
        let mut found = Vec::new();
        manifests(root, &mut found).expect("walked");
        let names: Vec<String> =
            found.iter().map(|p| p.strip_prefix(root).expect("inside").display().to_string()).collect();
        assert_eq!(names, ["a.yaml", "b.yml", "c.json", "sub/d.yaml"]);
    }

    #[test]
    fn an_endless_input_is_refused_once_past_the_bound() {
        let error = read_bounded(std::io::repeat(b'a')).expect_err("endless");
        assert!(error.to_string().contains("larger than 64 MiB"), "{error}");
        assert_eq!(read_bounded(&b"kind: Website\n"[..]).expect("small"), "kind: Website\n");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_usage_is_a_clap_error_with_exit_code_2() {
        let error = Cli::try_parse_from(["kubectl-website", "create", "x"]).expect_err("--repo is required");
        assert_eq!(error.exit_code(), 2);
        let error = Cli::try_parse_from(["kubectl-website", "list", "-o", "xml"]).expect_err("no such format");
        assert_eq!(error.exit_code(), 2);
        let error = Cli::try_parse_from(["kubectl-website", "wait", "x", "--timeout", "soon"]).expect_err("a duration");
        assert!(error.to_string().contains("is not a duration"), "{error}");
    }
}
