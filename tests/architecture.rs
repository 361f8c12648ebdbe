//! The map reads like the design: a request flows one way, http → keys → meter → pool → providers/proxy, and
//! no module imports one above it. This test reads every `crate::<module>` path in `src/` (test code aside)
//! and fails naming the file and the arrow that runs back up.

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module's place in the flow: a module may use only modules with a higher rank.
/// `main`/`lib` wire everything; `config`, `tier`, `endpoint` and `secret` are the foundation every layer shares.
const LAYERS: &[(&str, u8)] = &[
    ("main", 0),
    ("lib", 0),
    ("http", 1),
    ("provision", 1),
    ("error", 2),
    ("access_log", 2),
    ("reload", 2),
    // A reload puts the spend-log settings in force.
    ("spend_logs", 3),
    // Config + run-time models, merged into the table in force; reload and the model endpoints use it.
    ("catalog", 3),
    ("keys", 4),
    ("meter", 5),
    ("pool", 6),
    ("providers", 7),
    ("proxy", 8),
    ("metrics", 8),
    ("redis_link", 8),
    ("config", 9),
    ("tier", 10),
    ("endpoint", 10),
    ("secret", 10),
    // How the access-log and spend-log writers pace their drains (a leaf: std only).
    ("drain_pace", 10),
];

fn rank(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|(_, rank)| *rank)
}

/// The top-level module a source file belongs to: `src/keys/store.rs` → `keys`, `src/tier.rs` → `tier`.
fn module_of(path: &Path, src: &Path) -> String {
    let relative = path.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// Every module named as `crate::<module>` in non-test code: a file's `#[cfg(test)] mod tests { … }` (always
/// its last item, by convention) is left out, nothing before it.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
    let mut used = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String =
            code[at + "crate::".len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            used.insert(name);
        }
    }
    used
}

fn rust_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "bin") {
                rust_files(&path, files);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
            files.push(path);
        }
    }
}

#[test]
fn no_module_imports_one_above_it_in_the_flow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(file, &src);
        let own =
            rank(&module).unwrap_or_else(|| panic!("{} is in no layer; add `{module}` to LAYERS", file.display()));
        for used in crate_paths(&std::fs::read_to_string(file).unwrap()) {
            let Some(theirs) = rank(&used) else { continue };
            if used != module && theirs <= own {
                violations.push(format!("{}: {module} uses crate::{used}", file.strip_prefix(&src).unwrap().display()));
            }
        }
    }
    assert!(violations.is_empty(), "arrows running back up the flow:\n{}", violations.join("\n"));
}

#[test]
fn every_source_file_says_what_it_is_for_and_stays_short() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("//!"), "{} does not start with a `//!` line saying what it is for", file.display());
        let lines = text.lines().count();
        assert!(lines <= 420, "{} has {lines} lines; split it by responsibility", file.display());
    }
}

#[test]
fn the_checker_sees_an_arrow_running_back_up() {
    let code = "use crate::keys::Principal;\n#[cfg(test)]\nfn helper() {}\nlet x = crate::pool::Tried::default();\n\
                #[cfg(test)]\nmod tests {\n    use crate::http;\n}";
    let used = crate_paths(code);
    assert_eq!(used.into_iter().collect::<Vec<_>>(), vec!["keys", "pool"], "an early test item hides nothing");
    assert!(rank("keys").unwrap() < rank("pool").unwrap(), "pool may not use keys");
}

/// Tier isolation rests on it: a worker serves a grant it decoded while the grants version stands, so every
/// write to the grants tree must raise it (`src/keys/grants_version.rs`). Raw writes to the tree (and to any
/// tree through `KeyStore::tree`) stay in the files that raise it; anything else writes through a change.
#[test]
fn raw_writes_to_the_grants_tree_stay_where_the_grants_version_is_raised() {
    const RAISING: [&str; 3] = ["keys/transaction.rs", "keys/follower.rs", "keys/store/import.rs"];
    const RAW_WRITES: [&str; 10] = [
        "grants.insert(",
        "grants.remove(",
        "grants.apply_batch(",
        "grants.clear(",
        "grants.compare_and_swap(",
        "grants.fetch_and_update(",
        "grants.update_and_fetch(",
        "grants.merge(",
        "grants.transaction(",
        "store.tree(",
    ];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may write around the version on purpose (to show a read was skipped).
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap().replace(char::is_whitespace, "");
        let name = file.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if RAISING.contains(&name.as_str()) {
            assert!(code.contains("grants_version.rais"), "{name} writes grants but raises no grants version");
        } else if let Some(write) = RAW_WRITES.iter().find(|write| code.contains(*write)) {
            panic!("{name} writes a sled tree directly (`{write}`): go through a change, or raise the grants version");
        }
    }
}
