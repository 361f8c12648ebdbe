//! The router's pure rules.

use super::*;

#[test]
fn the_allowlist_bounds_fallbacks() {
    let table = RoutingTable::new(&[], Arc::new(RoutingPolicy::default()));
    let models = ["gpt-4".to_owned()];
    let limited = RouteScope { tier: None, models: &models };
    assert!(limited.may_use(&table, "gpt-4") && !limited.may_use(&table, "gpt-3.5"));
    assert!(RouteScope { tier: None, models: &[] }.may_use(&table, "anything"));
    let every = ["all-proxy-models".to_owned()];
    assert!(RouteScope { tier: None, models: &every }.may_use(&table, "anything"));
}

/// An upstream on this thread's runtime answering every chat with a fixed completion; its base URL.
fn upstream() -> String {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let answer = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    let server = HttpServer::new(move || {
        App::new().default_service(web::to(move || async move {
            HttpResponse::Ok().content_type("application/json").body(answer)
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    actix_rt::spawn(server.run());
    url
}

/// Picks and outcomes are the request's own work on its worker, with no message to the pool actor: a request
/// is answered (and its outcome recorded in the deployment's health) even with the worker's DeploymentPool
/// stopped. When every request asked the actor for its pick, this answered 503 (the mailbox was closed).
#[actix_rt::test]
async fn a_request_is_routed_without_messaging_the_pool_actor() {
    use actix::Actor;
    let yaml = format!(
        "model_list:\n  - model_name: gpt-4\n    litellm_params: {{model: openai/m, api_key: k, api_base: \"{}\"}}\n    model_info: {{id: only, tier: free}}\ngeneral_settings: {{master_key: sk-m}}\n",
        upstream()
    );
    let settings = crate::config::parse(&yaml, &|_| None).unwrap().settings;
    let deployments: Vec<Arc<Deployment>> = settings.deployments.into_iter().map(Arc::new).collect();
    let table = Arc::new(RoutingTable::new(&deployments, Arc::new(settings.routing)));
    let live = Arc::new(crate::pool::LiveTable::from_pointee(RoutingTable::new(&deployments, Arc::default())));
    let stopped = DeploymentPool::create(|ctx| {
        actix::ActorContext::stop(ctx);
        DeploymentPool::new(live, None)
    });
    actix_rt::task::yield_now().await;
    assert!(!stopped.connected(), "the pool actor is stopped");
    let (client, metrics, time) = (awc::Client::default(), Metrics::disabled(), Cell::default());
    let answered_by = Cell::default();
    let router = Router {
        client: &client,
        pool: &stopped,
        table: &table,
        metrics: &metrics,
        upstream_time: &time,
        answered_by: &answered_by,
    };
    let body = actix_web::web::Bytes::from_static(br#"{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}"#);
    let request = crate::http::parse_request(crate::endpoint::Endpoint::ChatCompletions, body).unwrap();
    let incoming = actix_web::test::TestRequest::default().to_http_request();
    let free = Tier::Free;
    let scope = RouteScope { tier: Some(&free), models: &[] };
    let answer = route::<Uncounted>(router, &request, &incoming, scope, None).await;
    assert_eq!(answer.map(|response| response.status().as_u16()).ok(), Some(200));
    let (_, state) = table.states().into_iter().next().unwrap();
    assert!(state.latency.is_some(), "the success is in the deployment's health at once");
}

/// The tally of a request nobody counts.
enum Uncounted {}

impl Tally for Uncounted {
    fn wants_usage(&self, _: &Deployment) -> bool {
        match *self {}
    }

    fn settle(self, _: &Arc<Deployment>, _: crate::proxy::TokenUsage) -> crate::proxy::Settled {
        match self {}
    }

    async fn admit_fallback(&mut self, _: &Arc<str>) -> bool {
        match *self {}
    }
}
