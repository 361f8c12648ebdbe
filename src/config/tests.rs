//! Config loading, as an operator meets it: the seed config, warnings, errors that name the entry, bounds.

use super::deployment::without_userinfo;
use super::*;
use crate::endpoint::Endpoint;

const SEED: &str = "
model_list:
  - model_name: gpt-4
    litellm_params:
      model: openai/fake
      api_key: fake-key
      api_base: https://exampleopenaiendpoint-production.up.railway.app/
    model_info:
      tier: free
  - model_name: gpt-4
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
    model_info:
      tier: paid
general_settings:
  master_key: sk-1234
";

fn no_env(_: &str) -> Option<String> {
    None
}

fn error_of(yaml: &str) -> String {
    parse(yaml, &no_env).unwrap_err().to_string()
}

#[test]
fn seed_config_loads_with_both_tiers() {
    let loaded = parse(SEED, &no_env).unwrap();
    let [free, paid] = &loaded.settings.deployments[..] else { panic!("two deployments expected") };
    assert_eq!(free.tier, Some(Tier::Free));
    assert_eq!(&*free.upstream_model, "fake");
    assert_eq!(
        free.url(Endpoint::ChatCompletions).unwrap().to_string(),
        "https://exampleopenaiendpoint-production.up.railway.app/chat/completions"
    );
    assert_eq!(free.api_base_header, "https://exampleopenaiendpoint-production.up.railway.app/");
    assert_eq!(paid.tier, Some(Tier::Paid));
    assert_eq!(paid.url(Endpoint::ChatCompletions).unwrap().to_string(), "https://api.openai.com/v1/chat/completions");
    assert_eq!(paid.api_base_header, OPENAI_API_BASE_HEADER);
    assert_eq!(paid.unset_credential(), Some("OPENAI_API_KEY"));
    assert_eq!(loaded.settings.known_tiers(), vec![Tier::Free, Tier::Paid]);
    assert!(loaded.warnings.iter().any(|w| w.contains("OPENAI_API_KEY is not set")));
    assert!(loaded.warnings.iter().any(|w| w.contains("publicly known")));
}

#[test]
fn environment_fills_in_keys_and_overrides_master_key() {
    let env = |var: &str| match var {
        "OPENAI_API_KEY" => Some("sk-upstream".to_owned()),
        "LITELLM_MASTER_KEY" => Some("sk-from-env".to_owned()),
        _ => None,
    };
    let loaded = parse(SEED, &env).unwrap();
    assert_eq!(loaded.settings.master_key.expose(), "sk-from-env");
    assert!(matches!(loaded.settings.deployments[1].credential, UpstreamCredential::Bearer(_)));
    assert!(!format!("{:?}", loaded.settings).contains("sk-upstream"), "secrets must not print");
}

#[test]
fn unknown_sections_and_fields_warn_once_each() {
    let yaml = format!("{SEED}\nrouter_settings:\n  enable_pre_call_checks: true\n  redis_db: 2\nlitellm_settings:\n  drop_params: true\n");
    let yaml = yaml.replace("      tier: free", "      tier: free\n      description: fast");
    let warnings = parse(&yaml, &no_env).unwrap().warnings;
    let unknown: Vec<_> = warnings.iter().filter(|w| w.starts_with("ignoring")).collect();
    assert_eq!(unknown.len(), 4, "{unknown:?}");
    assert!(unknown.iter().any(|w| w.contains("`litellm_settings.drop_params`")));
    assert!(unknown.iter().any(|w| w.contains("description")));
}

#[test]
fn wrong_type_names_the_entry() {
    let yaml = SEED.replace("tier: paid", "tier: [paid]");
    assert!(error_of(&yaml).contains("model_list[1].model_info.tier"), "{}", error_of(&yaml));
}

#[test]
fn malformed_yaml_is_an_error() {
    let error = error_of("model_list: [\n");
    assert!(error.contains("line 2"), "{error}");
    assert!(error_of("").contains("empty"));
}

#[test]
fn other_providers_are_refused_naming_the_entry() {
    let yaml = SEED.replace("openai/gpt-4o", "sagemaker/my-endpoint");
    let error = error_of(&yaml);
    assert!(error.contains("model_list[1].litellm_params.model") && error.contains("sagemaker"), "{error}");
    assert!(error.contains("anthropic/") && error.contains("azure/"), "lists what is supported: {error}");
    let bare = parse(&SEED.replace("openai/gpt-4o", "gpt-4o"), &no_env).unwrap();
    assert_eq!(&*bare.settings.deployments[1].upstream_model, "gpt-4o");
}

#[test]
fn missing_master_key_says_how_to_set_one() {
    let error = error_of(&SEED.replace("  master_key: sk-1234", "  store_model_in_db: true"));
    assert!(error.contains("LITELLM_MASTER_KEY") && error.contains("general_settings.master_key"), "{error}");
    let error = error_of(&SEED.replace("sk-1234", "os.environ/TG_MASTER"));
    assert!(error.contains("TG_MASTER is not set"), "{error}");
}

#[test]
fn duplicate_ids_and_bad_values_are_refused() {
    let yaml =
        SEED.replace("tier: free", "tier: free\n      id: same").replace("tier: paid", "tier: paid\n      id: same");
    assert!(error_of(&yaml).contains("model_list[1].model_info.id"));
    assert!(
        error_of(&SEED.replace("https://example", "ftp://example")).contains("model_list[0].litellm_params.api_base")
    );
    assert!(error_of(&SEED.replace("api_key: fake-key", "api_key: fake-key\n      timeout: -1")).contains("timeout"));
}

#[test]
fn router_settings_become_the_routing_policy() {
    let yaml = format!(
        "{SEED}router_settings:\n  routing_strategy: least-busy\n  num_retries: 4\n  retry_after: 0.5\n  \
         allowed_fails: 2\n  cooldown_time: 30\n  fallbacks: [{{\"gpt-4\": [\"gpt-4\"]}}]\n"
    );
    let policy = parse(&yaml, &no_env).unwrap().settings.routing;
    assert_eq!(policy.strategy, RoutingStrategy::LeastBusy);
    assert_eq!((policy.num_retries, policy.allowed_fails), (4, 2));
    assert_eq!((policy.retry_pause, policy.cooldown_time), (Duration::from_millis(500), Duration::from_secs(30)));
    assert_eq!(policy.fallbacks["gpt-4"], vec![std::sync::Arc::from("gpt-4")]);

    let defaults = parse(SEED, &no_env).unwrap().settings.routing;
    assert_eq!((defaults.num_retries, defaults.allowed_fails, defaults.cooldown_time), (2, 3, Duration::from_secs(5)));
}

#[test]
fn fallbacks_must_name_configured_models_and_odd_strategies_warn() {
    let yaml = format!("{SEED}router_settings:\n  fallbacks: [{{\"gpt-4\": [\"gpt-3.5-turbo\"]}}]\n");
    let error = error_of(&yaml);
    assert!(error.contains("router_settings.fallbacks[0].gpt-4") && error.contains("gpt-3.5-turbo"), "{error}");
    let yaml = format!("{SEED}router_settings:\n  routing_strategy: usage-based-routing-v2\n");
    assert!(parse(&yaml, &no_env).unwrap().warnings.iter().any(|w| w.contains("usage-based-routing-v2")));
}

#[test]
fn deployment_routing_params_are_read() {
    let yaml = SEED.replace(
        "api_key: fake-key",
        "api_key: fake-key\n      weight: 3\n      rpm: 100\n      stream_timeout: 2\n      max_retries: 1",
    );
    let free = &parse(&yaml, &no_env).unwrap().settings.deployments[0];
    assert_eq!((free.weight, free.rpm, free.max_retries), (Some(3.0), Some(100), Some(1)));
    assert_eq!((free.timeout, free.stream_timeout), (DEFAULT_TIMEOUT, Duration::from_secs(2)));
    assert!(error_of(&SEED.replace("api_key: fake-key", "api_key: fake-key\n      weight: -1")).contains("weight"));
}

#[test]
fn absurd_numbers_are_refused_at_load_naming_the_field() {
    let with_param = |param: &str| SEED.replace("api_key: fake-key", &format!("api_key: fake-key\n      {param}"));
    for (param, field) in [
        ("weight: 1e308", "weight"),
        ("timeout: 1e300", "timeout"),
        ("stream_timeout: 86401", "stream_timeout"),
        ("max_retries: 4000000000", "max_retries"),
    ] {
        assert!(error_of(&with_param(param)).contains(&format!("model_list[0].litellm_params.{field}")), "{param}");
    }
    for (setting, field) in [
        ("cooldown_time: 1e20", "cooldown_time"),
        ("retry_after: 3601", "retry_after"),
        ("num_retries: 1000", "num_retries"),
        ("allowed_fails: 4000000000", "allowed_fails"),
    ] {
        let yaml = format!("{SEED}router_settings:\n  {setting}\n");
        assert!(error_of(&yaml).contains(&format!("router_settings.{field}")), "{setting}");
    }
    for setting in ["max_request_size_mb: 1e12", "max_request_size_mb: 1e-30", "request_header_timeout: 0.000001"] {
        let yaml = SEED.replace("master_key: sk-1234", &format!("master_key: sk-1234\n  {setting}"));
        assert!(error_of(&yaml).contains(setting.split(':').next().unwrap()), "{setting}");
    }
    assert!(error_of(&SEED.replace("master_key: sk-1234", "master_key: \"sk-\\r\\nabc\"")).contains("printable"));
    let with_query = SEED.replace("railway.app/", "railway.app/v1?x=1");
    assert!(error_of(&with_query).contains("model_list[0].litellm_params.api_base"));
}

#[test]
fn openai_api_key_goes_only_to_openai() {
    let env = |var: &str| (var == "OPENAI_API_KEY").then(|| "sk-openai".to_owned());
    let yaml = config_of(&[
        "{model_name: a, litellm_params: {model: openai/x, api_base: 'http://elsewhere:8000/v1'}}",
        "{model_name: b, litellm_params: {model: openai/gpt-4o}}",
    ]);
    let deployments = parse(&yaml, &env).unwrap().settings.deployments;
    assert!(matches!(deployments[0].credential, UpstreamCredential::Anonymous));
    assert!(matches!(deployments[1].credential, UpstreamCredential::Bearer(_)));
}

#[test]
fn credentials_in_an_api_base_are_never_shown() {
    let yaml = config_of(&["{model_name: a, litellm_params: {model: openai/x, api_key: k, api_base: 'https://bob:hunter2@llm.internal:8443/v1'}}"]);
    let deployment = &parse(&yaml, &no_env).unwrap().settings.deployments[0];
    assert_eq!(deployment.api_base_header, "https://llm.internal:8443/v1");
    assert_eq!(without_userinfo("http://h/p@q"), "http://h/p@q");
}

#[test]
fn default_key_tier_must_be_a_configured_tier() {
    let yaml = SEED.replace("master_key: sk-1234", "master_key: sk-1234\n  default_key_tier: free");
    assert_eq!(parse(&yaml, &no_env).unwrap().settings.default_key_tier, Some(Tier::Free));
    let yaml = SEED.replace("master_key: sk-1234", "master_key: sk-1234\n  default_key_tier: gold");
    assert!(error_of(&yaml).contains("general_settings.default_key_tier"));
}

fn config_of(entries: &[&str]) -> String {
    format!("model_list: [{}]\ngeneral_settings: {{master_key: sk-m}}\n", entries.join(", "))
}

#[test]
fn derived_ids_survive_reordering_and_tell_twins_apart() {
    let a = "{model_name: m, litellm_params: {model: openai/a, api_key: k1, api_base: 'http://a/'}}";
    let b = "{model_name: m, litellm_params: {model: openai/b, api_key: k, api_base: 'http://b/'}}";
    let ids = |entries: &[&str]| -> Vec<String> {
        parse(&config_of(entries), &no_env).unwrap().settings.deployments.iter().map(|d| d.id.to_string()).collect()
    };
    let forward = ids(&[a, b]);
    let reversed = ids(&[b, a]);
    assert_eq!((&forward[0], &forward[1]), (&reversed[1], &reversed[0]), "ids moved with their entries");
    assert_ne!(forward[0], forward[1]);
    assert_eq!(ids(&[a, b, a])[..2], forward[..], "adding an entry changes no other id");
    let twins = ids(&[a, a]);
    assert_ne!(twins[0], twins[1]);
    let rekeyed = a.replace("k1", "another-key");
    assert_eq!(ids(&[&rekeyed])[0], forward[0], "the api key is not part of the id");
    let with_password = |password: &str| a.replace("http://a/", &format!("http://bob:{password}@a/"));
    assert_eq!(ids(&[&with_password("hunter2")])[0], forward[0], "nor a password in api_base");
    assert_eq!(ids(&[&with_password("other")])[0], forward[0]);
}

#[test]
fn openai_compatible_prefixes_get_their_base_key_and_headers_from_the_table() {
    let env = |var: &str| match var {
        "GROQ_API_KEY" => Some("gsk-env".to_owned()),
        "OPENROUTER_API_KEY" => Some("or-env".to_owned()),
        "OR_APP_NAME" => Some("my-app".to_owned()),
        _ => None,
    };
    let yaml = config_of(&[
        "{model_name: a, litellm_params: {model: groq/llama-3.1-8b-instant}}",
        "{model_name: b, litellm_params: {model: groq/llama-3.1-8b-instant, api_base: 'http://mine:8000/v1'}}",
        "{model_name: c, litellm_params: {model: openrouter/meta-llama/llama-3-8b}}",
    ]);
    let deployments = parse(&yaml, &env).unwrap().settings.deployments;
    assert_eq!(
        deployments[0].url(Endpoint::ChatCompletions).unwrap().to_string(),
        "https://api.groq.com/openai/v1/chat/completions"
    );
    assert_eq!(&*deployments[0].upstream_model, "llama-3.1-8b-instant");
    assert!(matches!(&deployments[0].credential, UpstreamCredential::Bearer(value) if value == "Bearer gsk-env"));
    assert!(
        matches!(deployments[1].credential, UpstreamCredential::Anonymous),
        "GROQ_API_KEY never goes to another api_base"
    );
    assert_eq!(&*deployments[2].upstream_model, "meta-llama/llama-3-8b");
    let headers: Vec<(String, String)> = deployments[2]
        .extra_headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(headers, [("http-referer".into(), "https://litellm.ai".into()), ("x-title".into(), "my-app".into())]);
}

#[test]
fn a_provider_without_a_default_base_needs_one() {
    let error = error_of(&config_of(&["{model_name: a, litellm_params: {model: hosted_vllm/meta-llama/x}}"]));
    assert!(
        error.contains("model_list[0].litellm_params.api_base") && error.contains("HOSTED_VLLM_API_BASE"),
        "{error}"
    );
}

#[test]
fn azure_urls_versions_and_keys() {
    let env = |var: &str| match var {
        "AZURE_API_KEY" => Some("az-env".to_owned()),
        "AZURE_API_BASE" => Some("https://res.openai.azure.com/".to_owned()),
        _ => None,
    };
    let yaml = config_of(&[
        "{model_name: a, litellm_params: {model: azure/dep-1}}",
        "{model_name: b, litellm_params: {model: azure/x, api_key: k, api_version: 2024-10-21, api_base: 'https://r.openai.azure.com/openai/deployments/named'}}",
    ]);
    let deployments = parse(&yaml, &env).unwrap().settings.deployments;
    assert_eq!(
        deployments[0].url(Endpoint::ChatCompletions).unwrap().to_string(),
        "https://res.openai.azure.com/openai/deployments/dep-1/chat/completions?api-version=2025-02-01-preview"
    );
    assert!(
        matches!(&deployments[0].credential, UpstreamCredential::KeyHeader(name, value) if name == "api-key" && value == "az-env")
    );
    assert_eq!(
        deployments[1].url(Endpoint::ChatCompletions).unwrap().to_string(),
        "https://r.openai.azure.com/openai/deployments/named/chat/completions?api-version=2024-10-21"
    );
    let error = error_of(&config_of(&["{model_name: a, litellm_params: {model: 'azure/a b', api_base: 'http://x'}}"]));
    assert!(error.contains("litellm_params.model"), "{error}");
}

/// #23 (gemini): AI Studio's URLs, the key in `x-goog-api-key`, `GEMINI_API_KEY` only for Google's own base.
#[test]
fn gemini_deployments_call_generate_content_with_their_key_header() {
    let env = |var: &str| (var == "GEMINI_API_KEY").then(|| "gem-env".to_owned());
    let yaml = config_of(&[
        "{model_name: a, litellm_params: {model: gemini/gemini-2.0-flash}}",
        "{model_name: b, litellm_params: {model: gemini/gemini-2.5-pro, api_base: 'http://proxy.local/v1beta'}}",
    ]);
    let deployments = parse(&yaml, &env).unwrap().settings.deployments;
    let url = |index: usize, endpoint| deployments[index].url(endpoint).map(ToString::to_string);
    assert_eq!(
        url(0, Endpoint::ChatCompletions).as_deref(),
        Some("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent")
    );
    assert_eq!(
        url(0, Endpoint::Embeddings).as_deref(),
        Some("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:embedContent")
    );
    assert_eq!(
        url(1, Endpoint::ChatCompletions).as_deref(),
        Some("http://proxy.local/v1beta/models/gemini-2.5-pro:generateContent"),
        "a base ending in a version keeps it"
    );
    assert!(url(0, Endpoint::Messages).is_none() && url(0, Endpoint::Completions).is_none());
    assert!(
        matches!(&deployments[0].credential, UpstreamCredential::KeyHeader(name, value) if name == "x-goog-api-key" && value == "gem-env")
    );
    assert!(
        matches!(&deployments[1].credential, UpstreamCredential::Anonymous),
        "the env key stays with Google's base"
    );
}

#[test]
fn anthropic_deployments_call_the_messages_api_with_their_key_header() {
    let env = |var: &str| (var == "ANTHROPIC_API_KEY").then(|| "ant-env".to_owned());
    let yaml = config_of(&[
        "{model_name: a, litellm_params: {model: anthropic/claude-sonnet-4-5}}",
        "{model_name: b, litellm_params: {model: anthropic/claude-x, api_key: k, api_base: 'http://proxy.local/v1'}}",
    ]);
    let deployments = parse(&yaml, &env).unwrap().settings.deployments;
    let messages = |index: usize| deployments[index].url(Endpoint::Messages).map(ToString::to_string);
    assert_eq!(messages(0).as_deref(), Some("https://api.anthropic.com/v1/messages"));
    assert_eq!(messages(1).as_deref(), Some("http://proxy.local/v1/messages"), "a base ending in /v1 is not doubled");
    assert!(
        deployments[0].url(Endpoint::Embeddings).is_none() && deployments[0].url(Endpoint::ChatCompletions).is_none()
    );
    assert!(
        matches!(&deployments[0].credential, UpstreamCredential::KeyHeader(name, value) if name == "x-api-key" && value == "ant-env")
    );
    assert!(matches!(&deployments[1].credential, UpstreamCredential::KeyHeader(_, value) if value == "k"));
    let version = deployments[0].extra_headers.iter().find(|(name, _)| name == "anthropic-version");
    assert_eq!(version.map(|(_, value)| value.to_str().unwrap()), Some("2023-06-01"));
    assert_eq!(deployments[0].provider, "anthropic");
}

#[test]
fn dot_segments_in_azure_names_and_api_bases_are_refused_naming_the_entry() {
    for (entry, field) in [
        ("{model_name: a, litellm_params: {model: azure/.., api_base: 'http://x'}}", "litellm_params.model"),
        ("{model_name: a, litellm_params: {model: azure/., api_base: 'http://x'}}", "litellm_params.model"),
        ("{model_name: a, litellm_params: {model: openai/m, api_base: 'http://x/v1/../admin'}}", "api_base"),
        ("{model_name: a, litellm_params: {model: openai/m, api_base: 'http://x/%2e%2e/admin'}}", "api_base"),
        ("{model_name: a, litellm_params: {model: openai/m, api_base: 'http://x/%2E./admin'}}", "api_base"),
        ("{model_name: a, litellm_params: {model: openai/m, api_base: 'http://x/./v1'}}", "api_base"),
    ] {
        let error = error_of(&config_of(&[entry]));
        assert!(error.contains("model_list[0].") && error.contains(field), "{entry}: {error}");
    }
    // Dots inside a segment are fine.
    let yaml = config_of(&[
        "{model_name: a, litellm_params: {model: azure/dep.v2, api_key: k, api_base: 'http://x/v1.2/...x'}}",
    ]);
    assert!(parse(&yaml, &no_env).is_ok());
}

#[test]
fn a_negative_zero_end_user_budget_is_a_budget_of_zero() {
    let yaml = format!("{SEED}litellm_settings:\n  max_end_user_budget: -0.0\n");
    let budget = parse(&yaml, &no_env).unwrap().settings.end_user_budget.max_budget.unwrap();
    assert!(budget == 0.0 && budget.is_sign_positive(), "{budget:?}");
}
