//! The binary's own commands an operator scripts: `tiergate --version` and `tiergate check`, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The variables the seed's config reads; each test sets the ones it means, whatever the caller's shell has.
const CONFIG_VARS: &[&str] = &["LITELLM_MASTER_KEY", "OPENAI_API_KEY", "OPENAI_API_BASE"];

fn tiergate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tiergate"));
    for var in CONFIG_VARS {
        command.env_remove(var);
    }
    command.args(args).envs(env.iter().copied()).output().unwrap()
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// `tiergate check --config <a file holding yaml>`: (exit success, standard output).
fn check_yaml(yaml: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = tiergate(&["check", "--config", path.to_str().unwrap()], env);
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn version_names_the_crate_version_and_the_commit_it_was_built_from() {
    let output = tiergate(&["--version"], &[]);
    assert!(output.status.success());
    let git =
        Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(env!("CARGO_MANIFEST_DIR")).output();
    let commit = match git {
        Ok(answer) if answer.status.success() && repo_file(".git").exists() => {
            String::from_utf8(answer.stdout).unwrap().trim().to_owned()
        }
        _ => "unknown".to_owned(),
    };
    let expected = format!("tiergate {} (commit {commit})\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
}

#[test]
fn check_accepts_the_repos_config_and_says_it_is_usable() {
    let config = repo_file("config.yaml");
    let env = [("LITELLM_MASTER_KEY", "sk-a-real-secret"), ("OPENAI_API_KEY", "sk-upstream")];
    let output = tiergate(&["check", "--config", config.to_str().unwrap()], &env);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert_eq!(text, format!("{}: usable, 2 deployments, 0 warnings\n", config.display()));
}

#[test]
fn check_prints_each_warning_naming_its_entry_and_still_passes() {
    // The repo's config as a newcomer runs it: the example master key and no upstream key in the shell.
    let config = repo_file("config.yaml");
    let output = tiergate(&["check", "--config", config.to_str().unwrap()], &[]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "a config with warnings is usable:\n{text}");
    assert!(text.contains("warning: the master key is LiteLLM's publicly known example `sk-1234`"), "{text}");
    assert!(text.contains("warning: model_list[1] (gpt-4): api_key is os.environ/OPENAI_API_KEY but"), "{text}");
    assert!(text.ends_with("usable, 2 deployments, 2 warnings\n"), "{text}");
}

#[test]
fn check_refuses_a_broken_config_naming_the_entry_and_the_warnings_before_it() {
    let yaml =
        "model_list:\n  - model_name: gpt-4\n    litellm_params: {model: openai/gpt-4o, api_key: os.environ/UNSET}\n\
                general_settings: {max_request_size_mb: 0}\n";
    let (usable, text) = check_yaml(yaml, &[("LITELLM_MASTER_KEY", "sk-master-secret")]);
    assert!(!usable, "a zero request size must fail the check:\n{text}");
    assert!(
        text.contains("warning: model_list[0] (gpt-4): api_key is os.environ/UNSET but UNSET is not set"),
        "{text}"
    );
    assert!(text.contains("error: config entry general_settings.max_request_size_mb: must be"), "{text}");
    assert!(text.ends_with("not usable, the gateway would refuse to start\n"), "{text}");
}

#[test]
fn check_names_the_entry_of_a_refused_value_without_showing_the_value() {
    // A secret pasted into the wrong field: the gateway refuses it, and check must not echo it.
    let yaml =
        "model_list:\n  - model_name: gpt-4\n    litellm_params: {model: openai/gpt-4o, rpm: sk-pasted-secret}\n";
    let (usable, text) = check_yaml(yaml, &[("LITELLM_MASTER_KEY", "sk-master-secret")]);
    assert!(!usable, "{text}");
    assert!(text.contains("error: config entry model_list[0].litellm_params.rpm"), "{text}");
    assert!(!text.contains("secret"), "no secret in the output:\n{text}");
}

#[test]
fn check_refuses_a_config_the_gateway_could_not_read_or_start_without_a_master_key() {
    let missing = tiergate(&["check", "--config", "/nonexistent/tiergate.yaml"], &[]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stdout).contains("cannot read config file /nonexistent/tiergate.yaml"));
    let (usable, text) = check_yaml("model_list: []\ngeneral_settings: {master_key: os.environ/MY_KEY}\n", &[]);
    assert!(!usable, "{text}");
    assert!(text.contains("error: no master key: general_settings.master_key is os.environ/MY_KEY"), "{text}");
}

#[test]
fn the_packaged_config_needs_the_master_key_from_the_environment_file() {
    // debian/config.yaml is /etc/tiergate/config.yaml; /etc/tiergate/env gives it LITELLM_MASTER_KEY.
    let config = repo_file("debian/config.yaml");
    let config = config.to_str().unwrap();
    let without = tiergate(&["check", "--config", config], &[]);
    assert!(!without.status.success(), "{}", String::from_utf8_lossy(&without.stdout));
    let with = tiergate(&["check", "--config", config], &[("LITELLM_MASTER_KEY", "sk-from-the-env-file")]);
    let text = String::from_utf8_lossy(&with.stdout);
    assert!(with.status.success(), "{text}");
    assert!(!text.contains("sk-from-the-env-file"), "{text}");
}
