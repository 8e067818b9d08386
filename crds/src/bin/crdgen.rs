//! Writes the Website CRD manifest.
//!
//! `crdgen` prints it, `crdgen --write` writes it to `crds/website-crd.yaml` (run from the workspace root),
//! and `crdgen --check` exits non-zero when that file is stale.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let manifest = website_crd::crd_yaml();
    let path = Path::new(website_crd::CRD_MANIFEST_PATH);
    match std::env::args().nth(1).as_deref() {
        None => {
            print!("{manifest}");
            ExitCode::SUCCESS
        }
        Some("--write") => match std::fs::write(path, &manifest) {
            Ok(()) => {
                eprintln!("wrote {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: failed to write {}: {e} (run crdgen from the workspace root)", path.display());
                ExitCode::FAILURE
            }
        },
        Some("--check") => match std::fs::read_to_string(path) {
            Ok(current) if current == manifest => ExitCode::SUCCESS,
            Ok(_) => {
                eprintln!("error: {} is stale; run `{}`", path.display(), website_crd::REGENERATE_COMMAND);
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("error: failed to read {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        Some(other) => {
            eprintln!("error: unknown argument {other:?}; usage: crdgen [--write | --check]");
            ExitCode::from(2)
        }
    }
}
