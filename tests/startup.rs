//! Starting the binary: the CLI, config validation with errors that name the entry, and the start-up log.

mod common;

use std::process::Command;

use common::*;

/// Runs the gateway on `config` until it exits (it should refuse to start); returns (success, stderr).
fn run_to_exit(config: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let env: Vec<_> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut child = gateway_command(&path, &dir.path().join("data"), &env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A gateway that starts when it should refuse fails the test in seconds instead of hanging it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.success(), stderr)
}

#[test]
fn help_documents_every_flag_and_its_default() {
    let output = Command::new(env!("CARGO_BIN_EXE_tiergate")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in ["--config", "config.yaml", "--host", "0.0.0.0", "--port", "4000", "--data-dir", "./data"] {
        assert!(help.contains(expected), "--help lacks {expected}:\n{help}");
    }
}

#[test]
fn missing_master_key_refuses_to_start_and_says_how_to_set_one() {
    let (ok, stderr) = run_to_exit("model_list: []\n", &[]);
    assert!(!ok);
    assert!(stderr.contains("general_settings.master_key") && stderr.contains("LITELLM_MASTER_KEY"), "{stderr}");
}

#[test]
fn a_wrong_type_refuses_to_start_naming_the_entry() {
    let config = config(&[
        deployment("gpt-4", "openai/fake", "k", Some("http://127.0.0.1:9"), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", None, Some("[paid, gold]")),
    ]);
    let (ok, stderr) = run_to_exit(&config, &[]);
    assert!(!ok);
    assert!(stderr.contains("model_list[1].model_info.tier"), "{stderr}");
}

#[test]
fn malformed_yaml_and_unsupported_providers_refuse_to_start() {
    let (ok, stderr) = run_to_exit("model_list: [\n  - {", &[]);
    assert!(!ok && stderr.contains("line"), "{stderr}");
    let config = config(&[deployment("claude", "sagemaker/anthropic.claude-3", "k", None, None)]);
    let (ok, stderr) = run_to_exit(&config, &[]);
    let named = stderr.contains("model_list[0].litellm_params.model") && stderr.contains("sagemaker");
    assert!(!ok && named && stderr.contains("anthropic/"), "the error lists what is supported: {stderr}");
}

#[test]
fn an_unreadable_config_path_is_named() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_tiergate")).args(["--config", "/nonexistent/tg.yaml"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/tg.yaml"));
}

#[actix_web::test]
async fn a_real_litellm_config_loads_warning_once_per_unknown_section() {
    let upstream = FakeUpstream::start("u");
    let config = format!(
        "{}router_settings:\n  enable_pre_call_checks: true\nlitellm_settings:\n  drop_params: true\n  \
         success_callback: [langfuse]\nenvironment_variables:\n  X: y\n",
        seed_config(&upstream.url)
    );
    let gateway = Gateway::start(&config);
    let log = gateway.log();
    for section in [
        "router_settings.enable_pre_call_checks",
        "`litellm_settings.drop_params`",
        "`litellm_settings.success_callback`",
        "`environment_variables`",
    ] {
        assert_eq!(log.matches(section).count(), 1, "{section} should be warned about once:\n{log}");
    }
    let key = gateway.mint_on_tier("free").await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
}

#[actix_web::test]
async fn the_start_up_line_lists_deployments_per_tier_and_no_secret() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start_with_env(&seed_config(&upstream.url), &[("OPENAI_API_KEY", "sk-upstream-secret")]);
    let log = gateway.log();
    let line = log.lines().find(|line| line.contains("listening on")).unwrap();
    assert!(line.contains("gpt-4 (free: 1, paid: 1)"), "{line}");
    for secret in [MASTER_KEY, "sk-upstream-secret", "fake-key"] {
        assert!(!log.contains(secret), "the log leaks {secret}:\n{log}");
    }
}

#[actix_web::test]
async fn the_environment_master_key_overrides_the_config() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start_with_env(&seed_config(&upstream.url), &[("LITELLM_MASTER_KEY", "sk-env-master")]);
    let free = serde_json::json!({"metadata": {"tier": "free"}});
    let response = gateway.post("/key/generate", "sk-env-master", &free).await;
    assert_eq!(response.status(), 200);
    let response = gateway.post("/key/generate", MASTER_KEY, &free).await;
    assert_eq!(response.status(), 401);
}

#[actix_web::test]
async fn a_busy_port_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(&[])).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tiergate"))
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--host", "127.0.0.1", "--port", &port])
        .env("LITELLM_MASTER_KEY", MASTER_KEY)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
}

#[test]
fn a_model_group_mixing_tiered_and_untiered_deployments_refuses_to_start_naming_the_group() {
    let config = config(&[
        deployment("gpt-4", "openai/a", "k", Some("http://127.0.0.1:9/"), Some("free")),
        deployment("gpt-4", "openai/b", "k", Some("http://127.0.0.1:9/"), None),
    ]);
    let (ok, stderr) = run_to_exit(&config, &[]);
    assert!(!ok);
    assert!(stderr.contains("model_list[1].model_info.tier") && stderr.contains("model group `gpt-4`"), "{stderr}");
}

#[test]
fn an_api_base_that_climbs_out_of_its_path_refuses_to_start_naming_the_entry() {
    let config =
        config(&[deployment("gpt-4", "openai/a", "k", Some("http://127.0.0.1:9/v1/%2e%2e/admin"), Some("free"))]);
    let (ok, stderr) = run_to_exit(&config, &[]);
    assert!(!ok);
    assert!(stderr.contains("model_list[0].litellm_params.api_base") && stderr.contains("`..`"), "{stderr}");
}
