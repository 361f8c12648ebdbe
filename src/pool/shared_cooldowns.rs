//! Cooldowns shared by replicas through Redis, as LiteLLM's router shares them: a deployment that cools
//! down on one replica cools down on every other for the time it has left. Announcements go on a short
//! Redis stream (`tiergate:cooldowns`), sent by a thread of their own, so a request that fails never waits
//! on Redis; another thread reads the stream (a blocking read) and applies what other replicas announce.
//! With Redis down, each replica cools its deployments down alone.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::Commands;

use super::health::now_ms;
use super::LiveTable;
use crate::redis_link::{ClusterError, Redis, PREFIX};

/// Announcements kept in the stream (trimmed about there): only new ones matter.
const STREAM_LENGTH: u64 = 1_000;
const READ_BLOCK_MS: usize = 1_000;
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Where this replica announces the cooldowns it starts.
#[derive(Clone)]
pub struct SharedCooldowns {
    outbox: Sender<(Box<str>, u64)>,
}

impl SharedCooldowns {
    /// Starts the sending and the reading threads; `table` is where announced cooldowns are applied.
    pub fn start(redis: Arc<Redis>, table: Arc<LiveTable>) -> std::io::Result<Self> {
        let replica = format!("{:016x}", rand::random::<u64>());
        let (outbox, sending) = channel();
        let sender = (Arc::clone(&redis), replica.clone());
        std::thread::Builder::new()
            .name("cooldown-sender".into())
            .spawn(move || send(&sender.0, &sender.1, sending))?;
        redis.spawn_reader("cooldown-reader", move |redis| read(redis, &replica, &table))?;
        Ok(Self { outbox })
    }

    /// Tells the other replicas that deployment `id` cools down for `left`.
    pub fn announce(&self, id: &str, left: Duration) {
        // The sender only stops with the process.
        let _ = self.outbox.send((id.into(), left.as_millis() as u64));
    }
}

fn stream() -> String {
    format!("{PREFIX}cooldowns")
}

/// Sends announcements as they come; one that cannot be sent (Redis down) is dropped: the cooldown still
/// holds on this replica, and a cooldown is short.
fn send(redis: &Redis, replica: &str, announcements: Receiver<(Box<str>, u64)>) {
    for (id, left_ms) in announcements {
        let sent = redis.run(|connection| {
            redis::cmd("XADD")
                .arg(stream())
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_LENGTH)
                .arg("*")
                .arg("deployment")
                .arg(&*id)
                .arg("left_ms")
                .arg(left_ms)
                .arg("replica")
                .arg(replica)
                .query::<String>(connection)
        });
        if let Err(err) = sent {
            log::warn!("could not tell other replicas that deployment {id} cools down: {err}");
        }
    }
}

/// Applies other replicas' announcements, from the newest entry on, until the connection fails.
fn read(redis: &Redis, replica: &str, table: &LiveTable) -> Result<(), ClusterError> {
    let mut connection = redis.connect(READ_TIMEOUT)?;
    let options = StreamReadOptions::default().count(256).block(READ_BLOCK_MS);
    let mut from = "$".to_owned();
    loop {
        let reply: Option<StreamReadReply> = connection.xread_options(&[stream()], &[&from], &options)?;
        for entry in reply.into_iter().flat_map(|reply| reply.keys).flat_map(|key| key.ids) {
            from = entry.id.clone();
            let text = |name: &str| entry.get::<String>(name);
            if text("replica").as_deref() == Some(replica) {
                continue;
            }
            let (Some(id), Some(left_ms)) = (text("deployment"), text("left_ms").and_then(|ms| ms.parse::<u64>().ok()))
            else {
                continue;
            };
            if let Some(health) = table.load().health_of(&id) {
                health.cool_down_as_told(now_ms(), Duration::from_millis(left_ms));
            }
        }
    }
}
