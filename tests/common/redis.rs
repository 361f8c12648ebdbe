//! A real `redis-server` on a free loopback port, with its own directory and the persistence the gateway
//! asks for (`appendonly yes`, `appendfsync always`); killed when dropped. Installed by
//! `scripts/install-redis.sh` when missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{chat_body, client, config, deployment, json_of, FakeUpstream, Gateway, MASTER_KEY};

/// How long a change may take to reach another replica.
pub const PROPAGATION: Duration = Duration::from_secs(1);

pub fn shared_config(upstream: &FakeUpstream, redis: &RedisServer, extra: &str) -> String {
    let config = config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&upstream.url), Some("paid")),
    ]);
    format!("{config}  redis_url: {}\n{extra}", redis.url())
}

pub async fn chat_status(gateway: &Gateway, key: &str) -> u16 {
    let mut response = gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await;
    let _ = response.body().await;
    response.status().as_u16()
}

/// Polls until `gateway` answers `key` with `status`; returns how long that took.
pub async fn until_status(gateway: &Gateway, key: &str, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let seen = chat_status(gateway, key).await;
        if seen == status {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "expected {status} within {within:?}, still {seen}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts `body` with `key` until it is not refused with a 429 whose message contains `refusal` (within 3 s),
/// and returns the response. What a request held in Redis (its parallel slot, its budget's hold) is given
/// back by a write just after its answer's last byte (docs/replicas.md): a request sent at once, through any
/// replica, may still find it held.
pub async fn posted_once_given_back(gateway: &Gateway, key: &str, body: &Value, refusal: &str) -> awc::ClientResponse {
    let start = Instant::now();
    loop {
        let mut response = gateway.post("/v1/chat/completions", key, body).await;
        if response.status() != 429 {
            return response;
        }
        let answer = json_of(&mut response).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(refusal), "refused for another reason than {refusal:?}: {answer}");
        assert!(start.elapsed() < Duration::from_secs(3), "never given back: {answer}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An admin call with the master key: its status and answer.
pub async fn admin(gateway: &Gateway, path: &str, body: Value) -> (u16, Value) {
    let mut response = gateway.post(path, MASTER_KEY, &body).await;
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

pub async fn readiness(gateway: &Gateway) -> u16 {
    let mut response = client().get(format!("{}/health/readiness", gateway.url)).send().await.unwrap();
    let _ = response.body().await;
    response.status().as_u16()
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// `requirepass`, if the server has one.
    password: Option<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::started(None)
    }

    /// A server that requires `password` (`requirepass`).
    pub fn with_password(password: &str) -> Self {
        Self::started(Some(password.to_owned()))
    }

    fn started(password: Option<String>) -> Self {
        let install = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-redis.sh");
        let installed = Command::new("bash").arg(install).status().expect("run scripts/install-redis.sh");
        assert!(installed.success(), "redis-server is needed for this test: apt-get install redis-server");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { child: None, port, dir: tempfile::tempdir().unwrap(), password };
        server.start_again();
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and directory: what it persisted is loaded.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is running");
        let mut command = Command::new("redis-server");
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--daemonize", "no"])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"])
            // `DEBUG SLEEP` stalls the server, for the tests of a slow Redis.
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !["+PONG", "-NOAUTH Authentication required."].contains(&self.command("PING").as_str()) {
            assert!(Instant::now() < deadline, "redis-server did not answer PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: nothing is flushed beyond what Redis already fsynced.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends one inline command and returns the first line of the answer ("" when unreachable).
    pub fn command(&self, command: &str) -> String {
        Self::command_on(self.port, command)
    }

    /// Stalls the server for `seconds` (`DEBUG SLEEP`, from a thread of its own); returns once it is asleep,
    /// with the thread, which answers the sleep's reply.
    pub fn stall(&self, seconds: f64) -> std::thread::JoinHandle<String> {
        let port = self.port;
        let sleeping = std::thread::spawn(move || Self::command_on(port, &format!("DEBUG SLEEP {seconds}")));
        let deadline = Instant::now() + Duration::from_secs(2);
        // Asleep when a PING goes unanswered for a moment.
        while Instant::now() < deadline {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { break };
            stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let mut answer = [0; 64];
            if stream.write_all(b"PING\r\n").is_err() || stream.read(&mut answer).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        sleeping
    }

    /// [`Self::command`] to the server on `port` (from another thread, e.g. a `DEBUG SLEEP` that stalls it).
    fn command_on(port: u16, command: &str) -> String {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if stream.write_all(format!("{command}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        let mut answer = vec![0; 4096];
        let read = stream.read(&mut answer).unwrap_or(0);
        String::from_utf8_lossy(&answer[..read]).lines().next().unwrap_or_default().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What a held command names, while commands are held, and a wake-up for when they are let through.
type Held = Arc<(Mutex<Option<Vec<u8>>>, Condvar)>;

/// A relay to a Redis server that can hold a command its clients send, as a replica's link to Redis does
/// when it stalls while the other links do not. Its threads end with the test process.
pub struct RedisGate {
    port: u16,
    held: Held,
}

impl RedisGate {
    pub fn start(redis: &RedisServer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held: Held = Arc::default();
        let (gate, target) = (Arc::clone(&held), redis.port);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(("127.0.0.1", target))) else { continue };
                relay(client.try_clone().unwrap(), server.try_clone().unwrap(), Some(Arc::clone(&gate)));
                relay(server, client, None);
            }
        });
        Self { port, held }
    }

    /// `redis://127.0.0.1:<port>` of the relay.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// From now on (`Some`), holds each read from a client that contains `naming` (a Redis name, written
    /// whole in one command), and whatever follows it on that connection; `None` sends what was held and lets
    /// everything through.
    pub fn hold(&self, naming: Option<&[u8]>) {
        *self.held.0.lock().unwrap() = naming.map(<[u8]>::to_vec);
        self.held.1.notify_all();
    }
}

/// Copies `from` to `to` until either ends; with a `gate`, waits from a command the gate holds on.
fn relay(mut from: TcpStream, mut to: TcpStream, gate: Option<Held>) {
    std::thread::spawn(move || {
        let mut buffer = [0; 16 * 1024];
        while let Ok(read @ 1..) = from.read(&mut buffer) {
            if let Some((held, released)) = gate.as_deref() {
                let naming = |held: &Option<Vec<u8>>| {
                    held.as_ref().is_some_and(|name| buffer[..read].windows(name.len()).any(|at| at == name))
                };
                let held = held.lock().unwrap();
                if naming(&held) {
                    let _released = released.wait_while(held, |held| held.is_some()).unwrap();
                }
            }
            if to.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}
