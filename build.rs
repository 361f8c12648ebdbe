//! Build script: stamps the git commit the binary is built from into `tiergate --version` (`TIERGATE_COMMIT`),
//! "unknown" when the source is not a git checkout (a crate tarball, a source package).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    // Without this, Cargo reruns the script whenever any file of the package changes.
    println!("cargo:rerun-if-changed=build.rs");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    // Only this checkout's own repository: a tarball unpacked inside some other repository must not take
    // that repository's commit.
    let commit = match root.join(".git").exists() {
        true => git(&root, &["rev-parse", "--short", "HEAD"]),
        false => None,
    };
    if commit.is_some() {
        watch_head(&root);
    }
    println!("cargo:rustc-env=TIERGATE_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}

/// Reruns this script when HEAD moves: a checkout changes `HEAD`, a commit changes the branch's ref (a loose
/// file, or `packed-refs` after `git pack-refs`). `--git-path` finds them in a worktree's or the common dir.
/// Only files that exist are named: Cargo reruns the script on every build for a missing one.
fn watch_head(root: &Path) {
    let mut files = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        files.push(branch);
    }
    for file in files {
        let Some(path) = git(root, &["rev-parse", "--git-path", &file]) else { continue };
        let path = root.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// One line of git's answer, or None when git is missing or fails.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(root).output().ok()?;
    let line = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !line.is_empty()).then_some(line)
}
