//! A stream reaches the client at the upstream's pace, event by event: none waits for a delayed
//! acknowledgement. (A sender's Nagle algorithm holds a small write while an earlier one is unacknowledged,
//! and a receiver on a reused connection acknowledges late, up to 40 ms on Linux: a stream through a proxy
//! stalls unless the proxy acknowledges its upstream at once and sends to its client without delay.)

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The upstream sends an event every 5 ms; a gap between two reads this long is a stall.
const PACE: Duration = Duration::from_millis(5);
/// A delayed acknowledgement holds a write about 40 ms on Linux; a loaded machine may pause a thread for
/// less than that, so only a gap of most of it counts as a stall.
const STALL: Duration = Duration::from_millis(33);
const EVENTS: usize = 8;
/// Streams read one after the other on one client connection (so both of the gateway's connections are reused).
const STREAMS: usize = 8;

/// An upstream that streams as many servers do, with Nagle's algorithm on (the socket default): its head in
/// one write, then each event in its own small write, `PACE` apart; keep-alive.
fn paced_upstream() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                while read_request(&mut stream).is_some() {
                    let head =
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                    let _ = stream.write_all(head.as_bytes());
                    for index in 0..EVENTS {
                        let event = format!("data: {{\"id\":\"chatcmpl-{index}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"x\"}}}}]}}\n\n");
                        let _ = stream.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
                        std::thread::sleep(PACE);
                    }
                    let _ = stream.write_all(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
                }
            });
        }
    });
    url
}

/// One streamed chat completion on `stream`, read as curl reads it: the pauses between reads.
fn read_gaps(stream: &mut std::net::TcpStream, address: &str, key: &str) -> Vec<Duration> {
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    let body = body.to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (mut gaps, mut last, mut buffer, mut received) = (Vec::new(), Instant::now(), [0u8; 65536], Vec::new());
    while !received.ends_with(b"\r\n0\r\n\r\n") {
        let read = stream.read(&mut buffer).unwrap();
        assert!(read > 0, "the stream ended early: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..read]);
        gaps.push(last.elapsed());
        last = Instant::now();
    }
    assert!(String::from_utf8_lossy(&received).contains("chatcmpl-7"), "{}", String::from_utf8_lossy(&received));
    gaps
}

fn connect(address: &str) -> std::net::TcpStream {
    let client = std::net::TcpStream::connect(address).unwrap();
    client.set_nodelay(true).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    client
}

#[actix_web::test]
async fn a_stream_passes_event_by_event_without_waiting_for_acknowledgements() {
    let upstream = paced_upstream();
    let gateway = Gateway::start(&config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream), Some("free"))]));
    let key = gateway.mint_on_tier("free").await;

    let address = gateway.url.trim_start_matches("http://");
    // One client connection reused (the gateway's writes to it), and a new one per stream (the gateway's
    // reused upstream connection alone).
    let mut client = connect(address);
    let mut stalled = Vec::new();
    for round in 0..2 * STREAMS {
        let gaps = match round < STREAMS {
            true => read_gaps(&mut client, address, &key),
            false => read_gaps(&mut connect(address), address, &key),
        };
        // The first gap counts too: the upstream's head and first event are two small writes, the second held
        // until the first is acknowledged.
        if gaps.iter().any(|gap| *gap >= STALL) {
            stalled.push(gaps);
        }
    }
    // A busy machine may pause a thread now and then; a gateway that lets small writes wait for a delayed
    // acknowledgement stalls ~40 ms in most streams on a reused connection (well over half of them).
    assert!(
        stalled.len() <= STREAMS / 4,
        "{} of {} streams paused {STALL:?} or more between reads: {stalled:?}",
        stalled.len(),
        2 * STREAMS
    );
}
