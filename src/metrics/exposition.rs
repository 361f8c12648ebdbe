//! The Prometheus text exposition format (version 0.0.4): every metric family with its `# HELP` and
//! `# TYPE`, label values escaped, histograms cumulative with `+Inf`, `_sum` and `_count`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use super::series::{DeploymentRef, Histogram, Shard, BUCKETS};
use crate::config::Deployment;

/// A deployment's routing state for `litellm_deployment_state`: 0 healthy, 1 partial outage (failures within
/// the last minute), 2 complete outage (cooling down).
pub struct DeploymentGauge {
    pub deployment: Arc<Deployment>,
    pub state: u8,
}

/// Labels of one sample, in order.
type Labels = Vec<(&'static str, String)>;

/// One metric family being written: samples gathered by label set, so equal label sets add up.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: BTreeMap<Labels, f64>,
    histograms: BTreeMap<Labels, Histogram>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Self { name, help, kind, samples: BTreeMap::new(), histograms: BTreeMap::new() }
    }

    fn add(&mut self, labels: Labels, value: f64) {
        *self.samples.entry(labels).or_default() += value;
    }

    fn set(&mut self, labels: Labels, value: f64) {
        self.samples.insert(labels, value);
    }

    fn observe(&mut self, labels: Labels, histogram: &Histogram) {
        self.histograms.entry(labels).or_default().merge(histogram);
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            let _ = writeln!(out, "{}{} {}", self.name, label_text(labels, None), number(*value));
        }
        for (labels, histogram) in &self.histograms {
            let mut cumulative = 0;
            for (index, count) in histogram.buckets.iter().enumerate() {
                cumulative += count;
                let bound = BUCKETS.get(index).map_or_else(|| "+Inf".to_owned(), |bound| number(*bound));
                let _ = writeln!(out, "{}_bucket{} {cumulative}", self.name, label_text(labels, Some(&bound)));
            }
            let _ = writeln!(out, "{}_sum{} {}", self.name, label_text(labels, None), number(histogram.sum));
            let _ = writeln!(out, "{}_count{} {}", self.name, label_text(labels, None), histogram.count);
        }
    }
}

fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:?}")
    } else if value.is_nan() {
        "NaN".into()
    } else if value > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

fn label_text(labels: &Labels, le: Option<&str>) -> String {
    let mut text = String::new();
    let all = labels.iter().map(|(name, value)| (*name, value.as_str())).chain(le.map(|le| ("le", le)));
    for (index, (name, value)) in all.enumerate() {
        text.push(if index == 0 { '{' } else { ',' });
        let _ = write!(text, "{name}=\"");
        for c in value.chars() {
            match c {
                '\\' => text.push_str("\\\\"),
                '"' => text.push_str("\\\""),
                '\n' => text.push_str("\\n"),
                c => text.push(c),
            }
        }
        text.push('"');
    }
    if !text.is_empty() {
        text.push('}');
    }
    text
}

/// LiteLLM's deployment labels: `litellm_model_name`, `model_id`, `api_base`, `api_provider`.
fn deployment_labels(deployment: &Deployment) -> Labels {
    vec![
        ("litellm_model_name", format!("{}/{}", deployment.provider, deployment.upstream_model)),
        ("model_id", deployment.id.to_string()),
        ("api_base", deployment.api_base_header.to_str().unwrap_or_default().to_owned()),
        ("api_provider", deployment.provider.to_owned()),
    ]
}

/// LiteLLM's `exception_class` for a status the client got.
fn exception_class(status: u16) -> &'static str {
    match status {
        0 => "APIConnectionError",
        400 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        408 | 504 => "Timeout",
        413 | 422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        503 => "ServiceUnavailableError",
        _ => "APIError",
    }
}

/// Writes every family, in a fixed order.
pub fn write_text(all: &Shard, deployments: &[DeploymentGauge]) -> String {
    let mut total = Family::new(
        "litellm_proxy_total_requests_metric_total",
        "counter",
        "Requests made to the proxy, by the status the client got",
    );
    let mut failed = Family::new(
        "litellm_proxy_failed_requests_metric_total",
        "counter",
        "Requests where the client did not get a success",
    );
    let mut latency = Family::new(
        "litellm_request_total_latency_metric",
        "histogram",
        "Seconds from a request's arrival to its response head",
    );
    let mut per_tier = Family::new(
        "tiergate_requests_by_tier_total",
        "counter",
        "Requests by the tier of the key that made them (none: master key or untiered key)",
    );
    for (series, (count, histogram)) in &all.requests {
        let key = ("hashed_api_key", series.caller.hashed_api_key.to_string());
        let model = ("requested_model", series.requested_model.to_string());
        let route = ("route", series.route.to_owned());
        let status = series.status.to_string();
        total.add(vec![key.clone(), model.clone(), route.clone(), ("status_code", status.clone())], *count as f64);
        if series.status >= 400 {
            let class = ("exception_class", exception_class(series.status).to_owned());
            failed.add(vec![key.clone(), model.clone(), route, ("exception_status", status), class], *count as f64);
        }
        latency.observe(vec![key, model], histogram);
        let tier = series.caller.tier.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string);
        per_tier.add(vec![("tier", tier)], *count as f64);
    }

    let mut successes = Family::new(
        "litellm_deployment_success_responses_total",
        "counter",
        "Successful upstream calls, by deployment",
    );
    let mut failures = Family::new(
        "litellm_deployment_failure_responses_total",
        "counter",
        "Failed upstream calls, by deployment and status (0: no answer)",
    );
    let mut attempts = Family::new(
        "litellm_deployment_total_requests_total",
        "counter",
        "Upstream calls, successful or not, by deployment",
    );
    let mut api_latency =
        Family::new("litellm_llm_api_latency_metric", "histogram", "Seconds an upstream took to its response head");
    let mut first_token =
        Family::new("litellm_llm_api_time_to_first_token_metric", "histogram", "Seconds to a stream's first piece");
    let mut cooled = Family::new(
        "litellm_deployment_cooled_down_total",
        "counter",
        "Times the router put a deployment into cooldown",
    );
    for (series, values) in &all.deployments {
        let DeploymentRef(deployment) = &series.deployment;
        let labels = deployment_labels(deployment);
        let with_model = |mut labels: Labels| {
            labels.insert(0, ("requested_model", series.requested_model.to_string()));
            labels
        };
        if values.successes > 0 || !values.failures.is_empty() {
            successes.add(with_model(labels.clone()), values.successes as f64);
            let failed: u64 = values.failures.values().sum();
            attempts.add(with_model(labels.clone()), (values.successes + failed) as f64);
        }
        for (status, count) in &values.failures {
            let mut labels = with_model(labels.clone());
            labels.push(("exception_status", status.to_string()));
            failures.add(labels, *count as f64);
        }
        for (status, count) in &values.cooldowns {
            let mut labels = labels.clone();
            labels.push(("exception_status", status.to_string()));
            cooled.add(labels, *count as f64);
        }
        let timing = vec![
            ("requested_model", series.requested_model.to_string()),
            ("model", format!("{}/{}", deployment.provider, deployment.upstream_model)),
            ("model_id", deployment.id.to_string()),
        ];
        if values.latency.count > 0 {
            api_latency.observe(timing.clone(), &values.latency);
        }
        if values.time_to_first_token.count > 0 {
            first_token.observe(timing, &values.time_to_first_token);
        }
    }
    let mut state = Family::new(
        "litellm_deployment_state",
        "gauge",
        "0: healthy, 1: partial outage (failures within the last minute), 2: complete outage (cooling down)",
    );
    for gauge in deployments {
        state.set(deployment_labels(&gauge.deployment), f64::from(gauge.state));
    }

    let mut spend = Family::new("litellm_spend_metric_total", "counter", "USD spent, by key and deployment");
    let mut input =
        Family::new("litellm_input_tokens_metric_total", "counter", "Prompt tokens of answers counted to keys");
    let mut output =
        Family::new("litellm_output_tokens_metric_total", "counter", "Completion tokens of answers counted to keys");
    let mut tokens = Family::new(
        "litellm_total_tokens_metric_total",
        "counter",
        "Prompt and completion tokens of answers counted to keys",
    );
    for (series, values) in &all.spend {
        let DeploymentRef(deployment) = &series.deployment;
        let labels = vec![
            ("hashed_api_key", series.caller.hashed_api_key.to_string()),
            ("requested_model", series.requested_model.to_string()),
            ("model", format!("{}/{}", deployment.provider, deployment.upstream_model)),
            ("model_id", deployment.id.to_string()),
        ];
        spend.add(labels.clone(), values.spend);
        input.add(labels.clone(), values.input_tokens as f64);
        output.add(labels.clone(), values.output_tokens as f64);
        tokens.add(labels, (values.input_tokens + values.output_tokens) as f64);
    }

    let mut fallback_ok = Family::new(
        "litellm_deployment_successful_fallbacks_total",
        "counter",
        "Fallbacks to another model group that answered",
    );
    let mut fallback_failed = Family::new(
        "litellm_deployment_failed_fallbacks_total",
        "counter",
        "Fallbacks to another model group that failed too",
    );
    for ((requested, fallback, answered), count) in &all.fallbacks {
        let labels = vec![("requested_model", requested.to_string()), ("fallback_model", fallback.to_string())];
        match answered {
            true => fallback_ok.add(labels, *count as f64),
            false => fallback_failed.add(labels, *count as f64),
        }
    }
    let mut refusals =
        Family::new("tiergate_rate_limit_refusals_total", "counter", "Requests refused by a key limit, by limit");
    for (limit, count) in &all.refusals {
        refusals.add(vec![("limit", (*limit).to_owned())], *count as f64);
    }
    let mut remaining = Family::new(
        "litellm_remaining_api_key_budget_metric",
        "gauge",
        "USD left of a key's max_budget, as of its last counted answer",
    );
    let mut max_budget = Family::new("litellm_api_key_max_budget_metric", "gauge", "A key's max_budget in USD");
    for (key, (max, left, _)) in &all.budgets {
        remaining.set(vec![("hashed_api_key", key.to_string())], *left);
        max_budget.set(vec![("hashed_api_key", key.to_string())], *max);
    }

    let mut out = String::with_capacity(16 * 1024);
    for family in [
        &total,
        &failed,
        &latency,
        &per_tier,
        &successes,
        &failures,
        &attempts,
        &api_latency,
        &first_token,
        &cooled,
        &state,
        &spend,
        &input,
        &output,
        &tokens,
        &fallback_ok,
        &fallback_failed,
        &refusals,
        &remaining,
        &max_budget,
    ] {
        family.write(&mut out);
    }
    out
}
