//! Built-in prices and `/model/info`, as a LiteLLM user meets them: a budget works on a deployment the config
//! does not price, `/model/info` (and `/v1`, `/v2`, `/model_group/info`) shows each deployment the caller may
//! use with its price and where that price came from, never another tier's deployments, and never a secret.

mod common;

use common::*;
use serde_json::{json, Value};

/// The fake upstream reports 9 prompt and 3 completion tokens for every answer.
const PROMPT_TOKENS: f64 = 9.0;
const COMPLETION_TOKENS: f64 = 3.0;

const UPSTREAM_KEY: &str = "sk-upstream-literal-9f8e7d6c5b4a";
const ANTHROPIC_KEY: &str = "sk-ant-api03-secretsecret-0a1b2c3d";
const AZURE_KEY: &str = "azure-env-key-5e6f7a8b9c0d1e2f";
const BASE_PASSWORD: &str = "hunter2-base-password";

/// `gpt-4o` on the free tier at OpenAI's built-in price, `cheap` priced by the config, `gpt-4o` on the paid
/// tier partly overridden, an Azure deployment priced by `base_model` with its key from the environment, an
/// Anthropic one, and a self-hosted model no table prices.
fn config(upstream: &FakeUpstream) -> String {
    format!(
        "model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: {UPSTREAM_KEY}
      api_base: {url}
    model_info:
      id: free-4o
      tier: free
  - model_name: cheap
    litellm_params:
      model: openai/fake
      api_key: {UPSTREAM_KEY}
      api_base: {url}
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
    model_info:
      id: free-cheap
      tier: free
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: {UPSTREAM_KEY}
      api_base: http://admin:{BASE_PASSWORD}@127.0.0.1:9/v1
      output_cost_per_token: 0.00002
      rpm: 100
    model_info:
      id: paid-4o
      tier: paid
  - model_name: azure-4o
    litellm_params:
      model: azure/prod-eu-deployment
      api_base: https://example-resource.openai.azure.com
    model_info:
      id: paid-azure
      tier: paid
      base_model: azure/gpt-4o-mini
  - model_name: claude
    litellm_params:
      model: anthropic/claude-3-5-haiku-20241022
      api_key: {ANTHROPIC_KEY}
    model_info:
      id: paid-claude
      tier: paid
  - model_name: llama
    litellm_params:
      model: hosted_vllm/my-llama
      api_base: http://127.0.0.1:9/v1
    model_info:
      id: paid-llama
      tier: paid
      supports_function_calling: true
general_settings:
  master_key: {MASTER_KEY}
",
        url = upstream.url
    )
}

fn start(upstream: &FakeUpstream) -> Gateway {
    Gateway::start_with_env(&config(upstream), &[("AZURE_API_KEY", AZURE_KEY)])
}

async fn get(gateway: &Gateway, path: &str, key: &str) -> (u16, Value) {
    let mut response = client().get(format!("{}{path}", gateway.url)).bearer_auth(key).send().await.unwrap();
    (response.status().as_u16(), json_of(&mut response).await)
}

/// The `model_info.id`s of a `/model/info` answer, in order.
fn ids(answer: &Value) -> Vec<&str> {
    answer["data"].as_array().unwrap().iter().map(|item| item["model_info"]["id"].as_str().unwrap()).collect()
}

/// The one item of `/model/info` with this id.
async fn item(gateway: &Gateway, id: &str) -> Value {
    let (status, answer) = get(gateway, &format!("/model/info?litellm_model_id={id}"), MASTER_KEY).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(ids(&answer), [id]);
    answer["data"][0].clone()
}

#[actix_web::test]
async fn a_budget_works_on_a_deployment_the_config_does_not_price() {
    let upstream = FakeUpstream::start("u");
    let gateway = start(&upstream);
    let info = item(&gateway, "free-4o").await["model_info"].clone();
    assert_eq!(info["price_source"], "builtin", "{info}");
    let (input, output) =
        (info["input_cost_per_token"].as_f64().unwrap(), info["output_cost_per_token"].as_f64().unwrap());
    assert!(input > 0.0 && output > 0.0, "{info}");
    let answer_cost = PROMPT_TOKENS * input + COMPLETION_TOKENS * output;
    // Two answers cross the budget: the one that crosses is served, the next is refused.
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "max_budget": answer_cost * 1.5})).await;
    let first = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4o")).await;
    assert_eq!(first.status(), 200);
    let cost: f64 = header(&first, "x-litellm-response-cost").parse().unwrap();
    assert!((cost - answer_cost).abs() < 1e-12, "{cost} != {answer_cost}");
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4o")).await.status(), 200);
    let mut refused = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4o")).await;
    assert_error(&mut refused, 429, "budget_exceeded").await;
    let (_, key_info) = get(&gateway, &format!("/key/info?key={key}"), MASTER_KEY).await;
    let spend = key_info["info"]["spend"].as_f64().unwrap();
    assert!((spend - 2.0 * answer_cost).abs() < 1e-12, "{spend}");
    assert_eq!(upstream.records().await.len(), 2);
}

#[actix_web::test]
async fn model_info_shows_each_deployment_with_its_price_and_where_it_came_from() {
    let upstream = FakeUpstream::start("u");
    let gateway = start(&upstream);
    for path in ["/model/info", "/v1/model/info", "/v2/model/info"] {
        let (status, answer) = get(&gateway, path, MASTER_KEY).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let mut all = ids(&answer);
        all.sort_unstable();
        assert_eq!(all, ["free-4o", "free-cheap", "paid-4o", "paid-azure", "paid-claude", "paid-llama"], "{path}");
    }
    let free = item(&gateway, "free-4o").await;
    assert_eq!(free["model_name"], "gpt-4o");
    assert_eq!(free["litellm_params"]["model"], "openai/gpt-4o");
    let info = &free["model_info"];
    assert_eq!(
        (&info["tier"], &info["db_model"], &info["litellm_provider"]),
        (&json!("free"), &json!(false), &json!("openai"))
    );
    assert_eq!((&info["mode"], &info["max_input_tokens"]), (&json!("chat"), &json!(128000)), "{info}");
    assert!(info["builtin_prices_as_of"].as_str().is_some_and(|date| date.starts_with("20")), "{info}");
    let cheap = item(&gateway, "free-cheap").await["model_info"].clone();
    assert_eq!(cheap["price_source"], "config");
    assert_eq!(
        (cheap["input_cost_per_token"].as_f64(), cheap["output_cost_per_token"].as_f64()),
        (Some(1e-6), Some(2e-6))
    );
    assert!(cheap["max_input_tokens"].is_null() && cheap.get("builtin_prices_as_of").is_none(), "{cheap}");
    // The config overrides the built-in row field by field.
    let paid = item(&gateway, "paid-4o").await["model_info"].clone();
    assert_eq!(paid["price_source"], "config+builtin");
    assert_eq!(paid["output_cost_per_token"].as_f64(), Some(2e-5));
    assert_eq!(paid["input_cost_per_token"], info["input_cost_per_token"]);
    // Azure is priced by base_model, as LiteLLM does.
    let azure = item(&gateway, "paid-azure").await["model_info"].clone();
    assert_eq!((&azure["price_source"], &azure["base_model"]), (&json!("builtin"), &json!("azure/gpt-4o-mini")));
    assert!(azure["input_cost_per_token"].as_f64().is_some_and(|price| price > 0.0));
    let claude = item(&gateway, "paid-claude").await["model_info"].clone();
    assert_eq!((&claude["price_source"], &claude["litellm_provider"]), (&json!("builtin"), &json!("anthropic")));
    let llama = item(&gateway, "paid-llama").await["model_info"].clone();
    assert_eq!(llama["price_source"], "none");
    assert!(llama["input_cost_per_token"].is_null() && llama["mode"].is_null(), "{llama}");
    // supports_* flags: the config's, else the table's, else false.
    assert_eq!((&llama["supports_function_calling"], &llama["supports_vision"]), (&json!(true), &json!(false)));
    assert_eq!((&info["supports_vision"], &info["supports_reasoning"]), (&json!(true), &json!(false)), "{info}");
    // An unknown id: 400 naming it, in the OpenAI error shape.
    let mut response = client()
        .get(format!("{}/model/info?litellm_model_id=nope-42", gateway.url))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("nope-42"), "{error}");
    // /v2 narrows to one model group and, with debug, says which client calls each deployment.
    let (_, v2) = get(&gateway, "/v2/model/info?model=gpt-4o&debug=true", MASTER_KEY).await;
    assert_eq!(ids(&v2), ["free-4o", "paid-4o"]);
    assert!(v2["data"][0]["openai_client"].as_str().is_some_and(|client| client.contains("OpenAi")), "{v2}");
}

#[actix_web::test]
async fn a_key_sees_only_the_deployments_its_tier_and_models_allow() {
    let upstream = FakeUpstream::start("u");
    let gateway = start(&upstream);
    let free = gateway.mint_on_tier("free").await;
    let (_, answer) = get(&gateway, "/model/info", &free).await;
    assert_eq!(ids(&answer), ["free-cheap", "free-4o"]);
    // A paid deployment's id is as unknown to a free key as a made-up one.
    let (status, answer) = get(&gateway, "/model/info?litellm_model_id=paid-4o", &free).await;
    assert_eq!(status, 400, "{answer}");
    let (_, groups) = get(&gateway, "/model_group/info", &free).await;
    let names: Vec<&str> =
        groups["data"].as_array().unwrap().iter().map(|g| g["model_group"].as_str().unwrap()).collect();
    assert_eq!(names, ["cheap", "gpt-4o"]);
    assert!(!groups.to_string().contains("anthropic") && !groups.to_string().contains("2e-5"), "{groups}");
    let only_cheap = gateway.mint(json!({"metadata": {"tier": "free"}, "models": ["cheap"]})).await;
    let (_, answer) = get(&gateway, "/v1/model/info", &only_cheap).await;
    assert_eq!(ids(&answer), ["free-cheap"]);
    let paid = gateway.mint_on_tier("paid").await;
    let (_, answer) = get(&gateway, "/v2/model/info", &paid).await;
    assert_eq!(ids(&answer), ["paid-azure", "paid-claude", "paid-4o", "paid-llama"]);
    let mut anonymous = client().get(format!("{}/model/info", gateway.url)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "{}", json_of(&mut anonymous).await);
}

/// /model/info reads the routing table in force: a deployment added by a reload shows at once.
#[actix_web::test]
async fn a_reloaded_config_shows_at_once() {
    let upstream = FakeUpstream::start("u");
    let gateway = start(&upstream);
    let added = "  - model_name: mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: http://127.0.0.1:9/v1\n    model_info:\n      id: free-mini\n      tier: free\n";
    let text = config(&upstream).replace("general_settings:", &format!("{added}general_settings:"));
    gateway.rewrite_config(&text);
    let mut reload = gateway.post("/config/reload", MASTER_KEY, &json!({})).await;
    assert_eq!(reload.status(), 200, "{}", json_of(&mut reload).await);
    let free = gateway.mint_on_tier("free").await;
    let (_, answer) = get(&gateway, "/model/info", &free).await;
    assert_eq!(ids(&answer), ["free-cheap", "free-4o", "free-mini"]);
    assert_eq!(item(&gateway, "free-mini").await["model_info"]["price_source"], "builtin");
}

#[actix_web::test]
async fn model_group_info_sums_the_deployments_the_caller_may_use() {
    let upstream = FakeUpstream::start("u");
    let gateway = start(&upstream);
    let (status, answer) = get(&gateway, "/model_group/info?model_group=gpt-4o", MASTER_KEY).await;
    assert_eq!(status, 200, "{answer}");
    let group = &answer["data"][0];
    assert_eq!(answer["data"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(
        (&group["model_group"], &group["providers"], &group["mode"]),
        (&json!("gpt-4o"), &json!(["openai"]), &json!("chat"))
    );
    // The most any deployment of the group costs: the paid one's overridden output price.
    assert_eq!(group["output_cost_per_token"].as_f64(), Some(2e-5));
    assert_eq!((&group["rpm"], &group["max_input_tokens"]), (&json!(100), &json!(128000)), "{group}");
    assert!(group["supported_openai_params"].as_array().unwrap().contains(&json!("tools")), "{group}");
    let (_, all) = get(&gateway, "/model_group/info", MASTER_KEY).await;
    let claude = all["data"].as_array().unwrap().iter().find(|g| g["model_group"] == "claude").unwrap();
    assert_eq!(claude["providers"], json!(["anthropic"]));
    assert!(!claude["supported_openai_params"].as_array().unwrap().contains(&json!("logit_bias")), "{claude}");
    assert_eq!(
        (&claude["supports_prompt_caching"], &claude["supports_function_calling"]),
        (&json!(true), &json!(true))
    );
    let llama = all["data"].as_array().unwrap().iter().find(|g| g["model_group"] == "llama").unwrap();
    assert_eq!((&llama["supports_vision"], &llama["supports_prompt_caching"]), (&json!(false), &json!(false)));
    // A free key's view of the same group: the free deployment's numbers only.
    let free = gateway.mint_on_tier("free").await;
    let (_, answer) = get(&gateway, "/model_group/info?model_group=gpt-4o", &free).await;
    assert!(answer["data"][0]["output_cost_per_token"].as_f64().is_some_and(|price| price < 2e-5), "{answer}");
    assert!(answer["data"][0]["rpm"].is_null(), "{answer}");
}

#[actix_web::test]
async fn no_answer_shows_a_secret() {
    let upstream = FakeUpstream::start("u");
    let gateway = start(&upstream);
    let free = gateway.mint_on_tier("free").await;
    let paths = ["/model/info", "/v1/model/info", "/v2/model/info?debug=true", "/model_group/info"];
    for (path, key) in paths.iter().flat_map(|path| [(*path, MASTER_KEY), (*path, free.as_str())]) {
        let (status, answer) = get(&gateway, path, key).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let text = answer.to_string();
        for secret in [UPSTREAM_KEY, ANTHROPIC_KEY, AZURE_KEY, BASE_PASSWORD, MASTER_KEY, free.as_str()] {
            assert!(!text.contains(secret), "{path} shows a secret: {text}");
        }
        assert!(!text.contains("api_key"), "{path}: {text}");
    }
    let paid = item(&gateway, "paid-4o").await;
    assert_eq!(paid["litellm_params"]["api_base"], "http://127.0.0.1:9/v1", "{paid}");
}
