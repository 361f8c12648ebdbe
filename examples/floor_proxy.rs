//! The floor of tiergate's own stack, for `scripts/bench.sh`: a minimal actix-web + awc pass-through.
//!
//! No keys, no routing, no metering, no headers of its own: every `POST` is sent to the upstream's same path
//! with the same body and `Content-Type`, and the answer's status, `Content-Type` and body (streamed, as it
//! arrives) are passed back. The awc client is built as tiergate's (`src/proxy/forward.rs`:
//! `upstream_client`): no redirects, a default `User-Agent`, a pool of 1024 connections kept alive 60 s, a
//! timeout on the head; and tiergate's allocator (mimalloc). Whatever tiergate spends above this is its own
//! work.
//!
//! `floor_proxy --upstream http://127.0.0.1:PORT [--port 0] [--workers 1]`; prints
//! `floor-proxy listening on http://<addr>` once it accepts connections.

use std::io::Write;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};

/// The allocator tiergate runs on (`src/main.rs`), so an allocator's gain is not counted as tiergate's own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The wait for the upstream's head, as tiergate's default deployment timeout bounds it.
const HEAD_TIMEOUT: Duration = Duration::from_secs(600);

struct Upstream(String);

fn client() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .add_default_header((header::USER_AGENT, "floor-proxy"))
        .connector(awc::Connector::new().limit(1024).conn_keep_alive(Duration::from_secs(60)))
        .finish()
}

async fn pass(
    request: HttpRequest,
    body: Bytes,
    upstream: web::Data<Upstream>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let url = format!("{}{}", upstream.0, request.uri().path());
    let mut outgoing = client.post(url).timeout(HEAD_TIMEOUT);
    if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
        outgoing = outgoing.insert_header((header::CONTENT_TYPE, content_type.clone()));
    }
    match outgoing.send_body(body).await {
        Ok(answer) => {
            let mut response = HttpResponse::build(answer.status());
            if let Some(content_type) = answer.headers().get(header::CONTENT_TYPE) {
                response.insert_header((header::CONTENT_TYPE, content_type.clone()));
            }
            response.streaming(answer)
        }
        Err(_) => HttpResponse::BadGateway().finish(),
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|arg| arg == name).and_then(|at| args.get(at + 1)).cloned()
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(upstream) = arg(&args, "--upstream") else {
        eprintln!("usage: floor_proxy --upstream http://HOST:PORT [--port 0] [--workers 1]");
        std::process::exit(2);
    };
    let port: u16 = arg(&args, "--port").and_then(|port| port.parse().ok()).unwrap_or(0);
    let workers: usize = arg(&args, "--workers").and_then(|workers| workers.parse().ok()).unwrap_or(1).clamp(1, 64);
    let upstream = web::Data::new(Upstream(upstream.trim_end_matches('/').to_string()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(upstream.clone())
            .app_data(web::Data::new(client()))
            .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
            .default_service(web::post().to(pass))
    })
    .workers(workers)
    // As tiergate: a stream's small writes go out at once.
    .tcp_nodelay(true)
    .bind(("127.0.0.1", port))?;
    for addr in server.addrs() {
        println!("floor-proxy listening on http://{addr}");
    }
    std::io::stdout().flush()?;
    server.run().await
}
