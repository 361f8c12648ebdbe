//! The admin page (`GET /ui`): a small page served by the binary (its files embedded at build time, no CDN),
//! that logs in with the master key (kept in the page's memory only: never in storage, a URL or the HTML) and
//! calls the admin API like any client; and `GET /usage/history` (master key), the last hour per tier that
//! it plots.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{auth, AppState};
use crate::error::ApiError;

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// Scripts and styles from this origin only; no frames, no inline code.
const POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                      form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn asset(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

pub async fn page() -> HttpResponse {
    asset(PAGE, "text/html; charset=utf-8")
}

pub async fn script() -> HttpResponse {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

pub async fn style() -> HttpResponse {
    asset(STYLE, "text/css; charset=utf-8")
}

/// `GET /usage/history`: requests, tokens and spend per tier and minute, the last hour, oldest first.
pub async fn history(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let minutes: Vec<_> = state
        .metrics
        .history()
        .into_iter()
        .map(|(minute, tier, usage)| {
            json!({
                "at": minute * 60,
                "tier": tier.as_ref().map_or("none", |tier| tier.as_str()),
                "requests": usage.requests,
                "tokens": usage.tokens,
                "spend": usage.spend,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "minutes": minutes })))
}
