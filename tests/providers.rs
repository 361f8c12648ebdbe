//! OpenAI-compatible provider prefixes, as an operator configures them: the prefix is stripped once, the
//! provider's base and key come from its environment variables, and its extra headers are sent.

mod common;

use common::*;

#[actix_web::test]
async fn a_prefixed_deployment_reaches_its_server_with_the_prefix_stripped_once() {
    let vllm = FakeUpstream::start("vllm");
    let router = FakeUpstream::start("openrouter");
    let text = format!(
        "model_list:
  - model_name: llama
    litellm_params: {{model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct, api_base: {vllm}}}
    model_info: {{tier: free}}
  - model_name: llama
    litellm_params: {{model: openrouter/meta-llama/llama-3.1-70b-instruct}}
    model_info: {{tier: paid}}
general_settings:
  master_key: {MASTER_KEY}
",
        vllm = vllm.url
    );
    let env = [("OPENROUTER_API_BASE", router.url.as_str()), ("OPENROUTER_API_KEY", "sk-or-upstream")];
    let gateway = Gateway::start_with_env(&text, &env);
    let free = gateway.mint_on_tier("free").await;
    let paid = gateway.mint_on_tier("paid").await;

    let response = gateway.post("/v1/chat/completions", &free, &chat_body("llama")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-litellm-model-api-base"), vllm.url);
    let sent = &vllm.records().await[0];
    assert_eq!(sent["body"]["model"], "meta-llama/Llama-3.1-8B-Instruct");
    assert!(sent["headers"].get("authorization").is_none(), "no key configured, none sent");

    let response = gateway.post("/v1/chat/completions", &paid, &chat_body("llama")).await;
    assert_eq!(response.status(), 200);
    let sent = &router.records().await[0];
    assert_eq!(sent["body"]["model"], "meta-llama/llama-3.1-70b-instruct");
    assert_eq!(sent["headers"]["authorization"], "Bearer sk-or-upstream", "the provider's own key, to its own base");
    assert_eq!(sent["headers"]["http-referer"], "https://litellm.ai");
    assert_eq!(sent["headers"]["x-title"], "liteLLM");
    assert!(!gateway.log().contains("sk-or-upstream"));
    assert_eq!(vllm.records().await.len(), 1, "tiers stay apart");
}

#[actix_web::test]
async fn an_azure_deployment_is_called_on_its_deployment_url_with_its_api_key_header() {
    let azure = FakeUpstream::start("azure");
    let text = format!(
        "model_list:
  - model_name: gpt-4o
    litellm_params: {{model: azure/my-gpt4o, api_base: {base}, api_key: azure-secret, api_version: 2024-10-21}}
general_settings:
  master_key: {MASTER_KEY}
",
        base = azure.url
    );
    let gateway = Gateway::start(&text);
    let response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("gpt-4o")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-litellm-model-api-base"), azure.url);
    let sent = &azure.records().await[0];
    assert_eq!(sent["path"], "/openai/deployments/my-gpt4o/chat/completions");
    assert_eq!(sent["query"], "api-version=2024-10-21");
    assert_eq!(sent["headers"]["api-key"], "azure-secret");
    assert!(sent["headers"].get("authorization").is_none(), "Azure's key is not a bearer token");
    assert!(!gateway.log().contains("azure-secret"));
}
