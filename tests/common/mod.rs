//! Shared fixtures: the real `tiergate` binary on port 0, and real `fake-openai` upstreams, as child processes.
#![allow(dead_code)]

pub mod redis;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

pub const MASTER_KEY: &str = "sk-test-master-4f1e9b";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// An HTTP client for tests; generous timeout so slow CI machines do not fail tests that are not about time.
pub fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(30)).finish()
}

/// A child process whose output is collected in the background; killed when dropped.
struct Process {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Process {
    /// Spawns `command` and waits for a line containing `listening on http://`; returns the process and the URL.
    fn spawn(mut command: Command, from_stdout: bool) -> (Self, String) {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn child process");
        let output = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (watched, other): (Box<dyn Read + Send>, Box<dyn Read + Send>) =
            if from_stdout { (Box::new(stdout), Box::new(stderr)) } else { (Box::new(stderr), Box::new(stdout)) };
        collect(watched, output.clone(), Some(url_tx));
        collect(other, output.clone(), None);
        let url = match url_rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("process did not start listening; output:\n{}", output.lock().unwrap());
            }
        };
        (Self { child, output }, url)
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(reader: Box<dyn Read + Send>, output: Arc<Mutex<String>>, url_tx: Option<mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            // Record the line before announcing the URL, so a test that reads the log right after start sees it.
            {
                let mut output = output.lock().unwrap();
                output.push_str(&line);
                output.push('\n');
            }
            if let (Some(tx), Some(at)) = (&url_tx, line.find("listening on http://")) {
                let url: String = line[at + "listening on ".len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != ',' && *c != ')')
                    .collect();
                let _ = tx.send(url.replace("0.0.0.0", "127.0.0.1"));
            }
        }
    });
}

/// A `fake-openai` (or `fake-anthropic`) upstream on a free port.
pub struct FakeUpstream {
    process: Process,
    pub url: String,
}

impl FakeUpstream {
    pub fn start(name: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fake-openai"));
        command.args(["--port", "0", "--workers", "1", "--stream-delay-ms", "5", "--name", name]);
        let (process, url) = Process::spawn(command, true);
        Self { process, url }
    }

    /// A `fake-anthropic` Messages API, as strict as the real one.
    pub fn start_anthropic(name: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fake-anthropic"));
        command.args(["--port", "0", "--stream-delay-ms", "2", "--name", name]);
        let (process, url) = Process::spawn(command, true);
        Self { process, url }
    }

    /// A `fake-gemini` (Google AI Studio's Gemini API), as strict as the real one; it accepts the key `key`.
    pub fn start_gemini(name: &str, key: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fake-gemini"));
        command.args(["--port", "0", "--stream-delay-ms", "2", "--name", name, "--key", key]);
        let (process, url) = Process::spawn(command, true);
        Self { process, url }
    }

    /// A `fake-vertex` (Vertex AI and its token endpoint, which checks JWTs against the test service
    /// account's public key in tests/fixtures/); its tokens live `token_ttl_s`.
    pub fn start_vertex(name: &str, token_ttl_s: u64) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fake-vertex"));
        let public_key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vertex-service-account.pub.pem");
        let ttl = token_ttl_s.to_string();
        command.args(["--port", "0", "--name", name, "--public-key", public_key, "--token-ttl-s", &ttl]);
        let (process, url) = Process::spawn(command, true);
        Self { process, url }
    }

    /// A `fake-bedrock` (AWS Bedrock's runtime), verifying SigV4 with the test credentials `key_id`/`secret` in
    /// `region`.
    pub fn start_bedrock(name: &str, key_id: &str, secret: &str, region: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fake-bedrock"));
        command.args(["--port", "0", "--stream-delay-ms", "2", "--name", name]);
        command.args(["--access-key-id", key_id, "--secret", secret, "--region", region]);
        let (process, url) = Process::spawn(command, true);
        Self { process, url }
    }

    /// The requests it received, oldest first: `{"path", "headers", "body"}`.
    pub async fn records(&self) -> Vec<Value> {
        let mut response = client().get(format!("{}/_records", self.url)).send().await.unwrap();
        response.json::<Vec<Value>>().limit(64 * 1024 * 1024).await.unwrap()
    }

    pub async fn set_mode(&self, mode: Value) {
        let response = client().post(format!("{}/_mode", self.url)).send_json(&mode).await.unwrap();
        assert!(response.status().is_success(), "fake upstream refused mode {mode}");
    }

    /// Lets a `hold_stream` answer continue past its first chunk.
    pub async fn release(&self) {
        client().post(format!("{}/_release", self.url)).send().await.unwrap();
    }
}

/// A TCP server that accepts, reads part of the request and closes with unread data: the peer sees a reset.
pub struct ResettingUpstream {
    pub url: String,
}

impl ResettingUpstream {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let mut first_bytes = [0u8; 16];
                let _ = stream.read(&mut first_bytes);
                drop(stream);
            }
        });
        Self { url }
    }
}

/// A TCP server that answers every request with fixed raw bytes (so a test can send what no well-behaved
/// server would), then keeps the connection open for `hold` and closes it. Counts the requests it read.
pub struct RawUpstream {
    pub url: String,
    requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl RawUpstream {
    pub fn start(answer: &str, hold: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (answer, counter) = (answer.as_bytes().to_vec(), requests.clone());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let (answer, counter) = (answer.clone(), counter.clone());
                std::thread::spawn(move || {
                    if read_request(&mut stream).is_some() {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = std::io::Write::write_all(&mut stream, &answer);
                        std::thread::sleep(hold);
                    }
                });
            }
        });
        Self { url, requests }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Reads one request: its head (as text) and its `Content-Length` body; `None` when the peer went away first.
pub fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|line| line.strip_prefix("content-length:").and_then(|value| value.trim().parse().ok()))
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                return Some((head, buffer[end + 4..end + 4 + length].to_vec()));
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A running `tiergate` on port 0 with its own config and data dir.
pub struct Gateway {
    process: Option<Process>,
    pub url: String,
    config_path: PathBuf,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    pub fn start(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        Self::launched(config, env, &[])
    }

    /// A gateway started with extra command-line arguments.
    pub fn start_with_args(config: &str, args: &[&str]) -> Self {
        Self::launched(config, &[], args)
    }

    fn launched(config: &str, env: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).unwrap();
        let data_dir = dir.path().join("data");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let args = args.iter().map(|arg| arg.to_string()).collect();
        let mut gateway = Self { process: None, url: String::new(), config_path, data_dir, env, args, _dir: dir };
        gateway.launch();
        gateway
    }

    fn launch(&mut self) {
        let (process, url) = Process::spawn(self.command(), false);
        self.process = Some(process);
        self.url = url;
    }

    /// The gateway command with this fixture's config, data dir and environment, listening on a free port.
    pub fn command(&self) -> Command {
        let mut command = gateway_command(&self.config_path, &self.data_dir, &self.env);
        command.args(&self.args);
        command
    }

    /// Replaces the config file (for a reload).
    pub fn rewrite_config(&self, config: &str) {
        std::fs::write(&self.config_path, config).unwrap();
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Everything the gateway has logged so far.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::output).unwrap_or_default()
    }

    /// SIGKILL: no shutdown hook runs, no buffer is flushed.
    pub fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.child.kill().unwrap();
            process.child.wait().unwrap();
        }
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("gateway is running").child.id()
    }

    /// Waits for the gateway to exit by itself.
    pub fn wait(&mut self) -> ExitStatus {
        let mut process = self.process.take().expect("gateway is running");
        process.child.wait().unwrap()
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut process = self.process.take().expect("gateway is running");
        let status = Command::new("kill").args(["-TERM", &process.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = process.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        exit
    }

    /// Starts the gateway again on the same config and data dir (on a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Mints a virtual key with the master key; panics unless the gateway answers 200.
    pub async fn mint(&self, body: Value) -> String {
        let mut response = self.post("/key/generate", MASTER_KEY, &body).await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{answer}");
        answer["key"].as_str().unwrap().to_owned()
    }

    pub async fn mint_on_tier(&self, tier: &str) -> String {
        self.mint(json!({"metadata": {"tier": tier}})).await
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> awc::ClientResponse {
        client().post(format!("{}{path}", self.url)).bearer_auth(key).send_json(body).await.unwrap()
    }
}

/// The gateway command for a config and data dir, with an environment that contains only what the test sets.
pub fn gateway_command(config: &Path, data_dir: &Path, env: &[(String, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tiergate"));
    command
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--host", "127.0.0.1", "--port", "0", "--workers", "2"])
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_API_BASE")
        .env_remove("LITELLM_MASTER_KEY")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_HOST")
        .env("RUST_LOG", "info");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// A chat completion body for `model`.
pub fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello, Claude gm!"}]})
}

/// A free-tier `gpt-4` deployment on `upstream` priced at 0.001 USD per prompt token and 0.002 per
/// completion token (the fake answers 9 and 3: 0.015 an answer).
pub fn priced_gpt4(upstream: &FakeUpstream) -> String {
    deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free")).replace(
        "      api_key: k\n",
        "      api_key: k\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.002\n",
    )
}

/// One deployment entry of a config.
pub fn deployment(model_name: &str, model: &str, api_key: &str, api_base: Option<&str>, tier: Option<&str>) -> String {
    let mut entry =
        format!("  - model_name: {model_name}\n    litellm_params:\n      model: {model}\n      api_key: {api_key}\n");
    if let Some(base) = api_base {
        entry.push_str(&format!("      api_base: {base}\n"));
    }
    if let Some(tier) = tier {
        entry.push_str(&format!("    model_info:\n      tier: {tier}\n"));
    }
    entry
}

/// A config with these deployments and the test master key.
pub fn config(deployments: &[String]) -> String {
    format!("model_list:\n{}general_settings:\n  master_key: {MASTER_KEY}\n", deployments.concat())
}

/// The seed's config, with the free deployment's api_base pointing at `free_url`. The paid one sets no
/// api_base, exactly as in the seed; run the gateway with `OPENAI_API_BASE` to point it somewhere local.
pub fn seed_config(free_url: &str) -> String {
    config(&[
        deployment("gpt-4", "openai/fake", "fake-key", Some(&format!("{free_url}/")), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "os.environ/OPENAI_API_KEY", None, Some("paid")),
    ])
}

/// Reads a whole response body as JSON.
pub async fn json_of(response: &mut awc::ClientResponse) -> Value {
    response.json::<Value>().limit(64 * 1024 * 1024).await.unwrap()
}

/// Asserts an OpenAI-style error with this status and type; returns the error object.
pub async fn assert_error(response: &mut awc::ClientResponse, status: u16, error_type: &str) -> Value {
    let body = json_of(response).await;
    assert_eq!(response.status().as_u16(), status, "{body}");
    let error = &body["error"];
    assert_eq!(error["type"], error_type, "{body}");
    assert_eq!(error["code"], status.to_string(), "{body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(error.get("param").is_some(), "{body}");
    error.clone()
}

/// A response header as text ("" when absent).
pub fn header(response: &awc::ClientResponse, name: &str) -> String {
    response.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned()
}

/// A raw HTTP/1.1 POST (`Connection: close`) read until the gateway closes the connection: the head, the
/// body's bytes as they came, and whether the chunked body ended with its last chunk (a clean end). awc, like
/// many clients, takes a closed connection for the end of a chunked body, so it cannot tell.
pub fn raw_post(gateway: &Gateway, path: &str, key: &str, body: &Value) -> (String, Vec<u8>, bool) {
    let address = gateway.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {key}\r\nx-api-key: {key}\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let (body, clean) = dechunk(&raw[split..]);
    (head, body, clean)
}

/// A chunked body's bytes, and whether its last chunk arrived.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else { return (body, false) };
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return (body, true);
        }
        let start = line_end + 2;
        let end = (start + size).min(raw.len());
        body.extend_from_slice(&raw[start..end]);
        if end < start + size || raw.len() < end + 2 {
            return (body, false);
        }
        raw = &raw[end + 2..];
    }
}

/// The spend-log rows of `key`, newest first, once the writer has written `count` of them (it drains every
/// 50 ms).
pub async fn spend_rows_of(gateway: &Gateway, key: &str, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        let url = format!("{}/spend/logs?api_key={key}", gateway.url);
        let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let rows = json_of(&mut response).await.as_array().unwrap().clone();
        if rows.len() >= count {
            return rows;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} rows for the key");
}
