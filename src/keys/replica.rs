//! Keys shared by replicas through Redis. Redis holds the store (one hash per tree, hashes only, never a
//! plaintext key) and a stream of every change, numbered; each replica keeps a copy in its own sled store,
//! which the hot path reads, so authorising never waits on Redis.
//!
//! A change is committed by one Lua script: its checks (a taken alias, an existing key), its writes, the
//! next change number and the stream entry, all or nothing. The replica that made it answers once its own
//! copy has applied it from the stream (`follower.rs`), so a client reads its own writes on that replica;
//! every other replica applies it within the follower's push latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::change::{Change, Tree};
use super::store::Conflict;
use super::{KeyStore, StoreError};
use crate::meter::{spend_written_prefix, spent_prefix};
use crate::redis_link::{ClusterError, Redis, PREFIX};
use std::path::Path;

/// Entries kept in the change stream (trimmed about there): a replica away for longer copies the whole
/// store again.
const STREAM_LENGTH: u64 = 100_000;
/// Where a replica keeps its copy of a shared (Redis) store, inside `--data-dir`.
const REPLICA_DIR: &str = "redis-copy";
/// How long a write waits for this replica's copy to apply it before answering anyway (it is committed).
const OWN_COPY_WAIT: Duration = Duration::from_secs(1);

/// A Lua function both scripts start with: the last change number, after both the counter and the stream's
/// last entry (a counter lost or reset must not reuse numbers); `nil` when the counter is not a whole number
/// below 2^53 (a fraction or a huge one would break the stream's ids).
macro_rules! last_number_lua {
    () => {
        r#"
local function last_number(counter, stream)
  local seq = tonumber(redis.call('GET', counter) or '0')
  if not seq or seq < 0 or seq ~= math.floor(seq) or seq >= 2^53 then return nil end
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  if last then
    local top = tonumber(string.match(last[1], '^(%d+)')) or 0
    if top > seq then seq = top end
  end
  return seq
end
"#
    };
}

const COMMIT: &str = concat!(
    last_number_lua!(),
    r#"
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  -- No store here: a new one, unless this replica's copy is of a store that Redis has lost.
  if ARGV[6] ~= '' then return {2, 0} end
  redis.call('SET', KEYS[4], ARGV[1])
elseif ARGV[6] ~= '' and epoch ~= ARGV[6] then
  return {3, 0}
end
local i = 7
local checks = tonumber(ARGV[i]); i = i + 1
for c = 1, checks do
  local current = redis.call('HGET', KEYS[4 + tonumber(ARGV[i])], ARGV[i + 1])
  local allowed = tonumber(ARGV[i + 3])
  -- Absent: fine unless it must be there. There, with nothing allowed listed: fine if it must be there.
  local fine = (not current and ARGV[i + 2] == '0') or (current and allowed == 0 and ARGV[i + 2] == '1')
  for a = 1, allowed do
    if current == ARGV[i + 3 + a] then fine = true end
  end
  if not fine then return {0, c} end
  i = i + 4 + allowed
end
local writes_at = i
i = i + 1 + 4 * tonumber(ARGV[i])
local links = tonumber(ARGV[i])
local links_at = i + 1
i = links_at + links
-- A budget deleted as linked to no key up to change ARGV[i + 1] of the deleting replica's copy: a key
-- linked to it by a later change (on another replica) refuses the delete.
local written_prefix = ARGV[i + 2]
if ARGV[i] ~= '' and tonumber(redis.call('HGET', KEYS[#KEYS], ARGV[i]) or '0') > tonumber(ARGV[i + 1]) then
  return {4, 0}
end
-- The next change number, found before anything is written: a failure here writes nothing.
local seq = last_number(KEYS[1], KEYS[2])
if not seq then return redis.error_reply('tiergate:seq is not a change number') end
seq = seq + 1
i = writes_at
local writes = tonumber(ARGV[i]); i = i + 1
for w = 1, writes do
  local tree = KEYS[4 + tonumber(ARGV[i])]
  local spend = ARGV[i] == ARGV[5]
  local replaced = ARGV[i + 2] ~= 'put' or (spend and redis.call('HEXISTS', tree, ARGV[i + 1]) == 1)
  if ARGV[i + 2] == 'put' then redis.call('HSET', tree, ARGV[i + 1], ARGV[i + 3])
  else redis.call('HDEL', tree, ARGV[i + 1]) end
  -- A key's spend entry written anew: what metering added on top of the old one is in it (or gone).
  if spend then redis.call('DEL', KEYS[#KEYS - 1] .. ARGV[i + 1]) end
  -- Replaced or deleted (not a new key's first): what a replica counted before its copy had this change is
  -- left out of the sums from now on (the spend exchange compares this number with the copy's), so a batch
  -- in flight cannot add it back. Kept as long as a batch is retried.
  if spend and replaced then redis.call('SET', written_prefix .. ARGV[i + 1], seq, 'PX', 86400000) end
  i = i + 4
end
-- Written as an integer: Lua's `..` renders 1e14 and above as `1e+14`, which is no stream id.
local id = string.format('%d', seq)
-- The last change that linked a key to each budget (for deletes of it computed from older copies).
for l = links_at, links_at + links - 1 do redis.call('HSET', KEYS[#KEYS], ARGV[l], id) end
local unlinked = ARGV[links_at + links]
if unlinked ~= '' then redis.call('HDEL', KEYS[#KEYS], unlinked) end
redis.call('SET', KEYS[1], id)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], id, ARGV[4]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id .. '-1', 'writes', ARGV[3], 'audit', ARGV[4])
return {1, seq}
"#
);

/// Where the shared store is: its epoch and its last change number.
pub(super) const HEAD: &str = concat!(
    last_number_lua!(),
    r#"
local seq = last_number(KEYS[2], KEYS[3])
if not seq then return redis.error_reply('tiergate:seq is not a change number') end
return {redis.call('GET', KEYS[1]), seq}
"#
);

/// The Redis names of the shared store.
pub(super) struct Names;

impl Names {
    pub(super) fn seq() -> String {
        format!("{PREFIX}seq")
    }
    pub(super) fn stream() -> String {
        format!("{PREFIX}changes")
    }
    /// Change number → its audit entries.
    pub(super) fn audit() -> String {
        format!("{PREFIX}audit")
    }
    /// A random id set once: a Redis that was emptied (or replaced) gets a new one, and copies notice.
    pub(super) fn epoch() -> String {
        format!("{PREFIX}epoch")
    }
    /// Budget id → the last change that linked a key to it (kept in Redis only).
    pub(super) fn budget_links() -> String {
        format!("{PREFIX}budget_links")
    }
    pub(super) fn tree(tree: Tree) -> String {
        format!("{PREFIX}{}", tree.name())
    }
}

/// The shared store, as the key store commits to it.
pub struct SharedKeys {
    pub(super) redis: Arc<Redis>,
    script: redis::Script,
    /// The highest change number this replica's copy has applied, and a wake-up for writers waiting on it.
    applied: Mutex<u64>,
    caught_up: Condvar,
    /// Whether a follower keeps this replica's copy (not for the `keys import` command).
    followed: bool,
    /// The same number, for the meter's spend exchange (read without a lock): the meter tells Redis how far
    /// this copy was when it gathered a batch, so counts made before a key's spend entry was written anew
    /// are left out.
    copy_seq: Arc<AtomicU64>,
    /// Redis was found empty while the copy held a store: changes are refused until it is restored.
    emptied: AtomicBool,
    /// The store this replica's copy is of (its epoch), which a change must be made to; `None` before the
    /// copy was ever filled (and for `keys import`, which writes to whatever store is there).
    copy_epoch: Mutex<Option<Vec<u8>>>,
}

impl SharedKeys {
    pub fn new(redis: Arc<Redis>, followed: bool) -> Arc<Self> {
        Arc::new(Self {
            redis,
            script: redis::Script::new(COMMIT),
            applied: Mutex::new(0),
            caught_up: Condvar::new(),
            copy_seq: Arc::default(),
            followed,
            emptied: AtomicBool::new(false),
            copy_epoch: Mutex::new(None),
        })
    }

    /// Commits a change to Redis: refused with the conflict of the first check that fails, else written and
    /// numbered. Answers once this replica's copy has it (or after [`OWN_COPY_WAIT`]).
    /// Whether a follower keeps this replica's copy (not so for a move's scratch copy).
    pub(super) fn followed(&self) -> bool {
        self.followed
    }

    pub(super) fn commit(&self, change: &Change) -> Result<Result<(), Conflict>, StoreError> {
        if self.emptied.load(Ordering::Relaxed) {
            return Err(ClusterError::Emptied.into());
        }
        let mut invocation = self.script.prepare_invoke();
        invocation.key(Names::seq()).key(Names::stream()).key(Names::audit()).key(Names::epoch());
        for tree in Tree::ALL {
            invocation.key(Names::tree(tree));
        }
        // The last two keys, after every tree (the script finds them as KEYS[#KEYS - 1] and KEYS[#KEYS]): the
        // prefix of the spend sums (`meter::spent_name`, not a key itself), which the script clears, and the
        // budget links.
        invocation.key(spent_prefix());
        invocation.key(Names::budget_links());
        invocation.arg(new_epoch()).arg(STREAM_LENGTH).arg(change.encode_writes()).arg(change.encode_audit());
        invocation.arg(tree_index(Tree::Spend));
        let copy_epoch = self.copy_epoch.lock().unwrap_or_else(PoisonError::into_inner).clone();
        invocation.arg(copy_epoch.unwrap_or_default());
        invocation.arg(change.checks.len());
        for check in &change.checks {
            invocation.arg(tree_index(check.tree)).arg(check.key.as_slice()).arg(u8::from(check.present));
            invocation.arg(check.allowed.len());
            for allowed in &check.allowed {
                invocation.arg(allowed.as_slice());
            }
        }
        invocation.arg(change.writes.len());
        for write in &change.writes {
            invocation.arg(tree_index(write.tree)).arg(write.key.as_slice());
            match &write.value {
                Some(value) => invocation.arg("put").arg(value.as_slice()),
                None => invocation.arg("del").arg(""),
            };
        }
        invocation.arg(change.links.len());
        for budget in &change.links {
            invocation.arg(budget.as_slice());
        }
        match &change.unlinked {
            Some((budget, as_of)) => invocation.arg(budget.as_slice()).arg(as_of),
            None => invocation.arg("").arg(0),
        };
        invocation.arg(spend_written_prefix());
        let (done, number): (i64, i64) = self.redis.run(|connection| invocation.invoke(connection))?;
        match (done, usize::try_from(number)) {
            (1, Ok(seq)) => {
                self.wait_for_copy(seq as u64);
                Ok(Ok(()))
            }
            (2, _) => Err(ClusterError::Emptied.into()),
            (3, _) => Err(ClusterError::Replaced.into()),
            (4, _) => Ok(Err(Conflict::ChangedMeanwhile)),
            (0, Ok(check)) if (1..=change.checks.len()).contains(&check) => {
                Ok(Err(change.checks[check - 1].conflict.clone()))
            }
            _ => Err(ClusterError::Protocol("the commit script gave an unknown answer".into()).into()),
        }
    }

    fn wait_for_copy(&self, seq: u64) {
        if !self.followed {
            return;
        }
        let deadline = Instant::now() + OWN_COPY_WAIT;
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        while *applied < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("change {seq} is committed to Redis but this replica's copy has not applied it yet");
                return;
            }
            applied = self.caught_up.wait_timeout(applied, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// The follower found Redis empty while the copy held a store (`true`), or found it whole again.
    pub(super) fn emptied(&self, emptied: bool) {
        if emptied && !self.emptied.swap(true, Ordering::Relaxed) {
            log::error!(
                "Redis at {} holds none of the shared key store (emptied, or replaced by an empty one), while this \
                 replica's copy has it. Key changes are refused and keys are served from the copy. To restore: stop \
                 one replica, run `tiergate keys export --data-dir <its data dir>/redis-copy --out restore.jsonl`, \
                 then `tiergate keys import restore.jsonl --redis-url <url>`, and start it again",
                self.redis.shown
            );
        }
        if !emptied && self.emptied.swap(false, Ordering::Relaxed) {
            log::warn!("Redis at {} holds a key store again; following it", self.redis.shown);
        }
    }

    /// The store this replica's copy is now of.
    pub(super) fn copy_of(&self, epoch: Option<Vec<u8>>) {
        *self.copy_epoch.lock().unwrap_or_else(PoisonError::into_inner) = epoch;
    }

    /// The follower has applied every change up to `seq`.
    pub(super) fn applied(&self, seq: u64) {
        self.copy_seq.store(seq, Ordering::Release);
        *self.applied.lock().unwrap_or_else(PoisonError::into_inner) = seq;
        self.caught_up.notify_all();
    }
}

/// A tree as the commit script numbers them (`KEYS[4 + n]`, in the order of [`Tree::ALL`]).
fn tree_index(tree: Tree) -> usize {
    Tree::ALL.iter().position(|t| *t == tree).map_or(0, |at| at + 1)
}

/// A random epoch, used only if Redis has none yet.
fn new_epoch() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl KeyStore {
    /// Opens a replica's copy of the shared store, under `data_dir` beside (never in) the store of a single
    /// gateway: changes go to Redis first, and [`super::follow`] keeps the copy.
    pub fn open_replica(data_dir: &Path, shared: Arc<SharedKeys>) -> Result<Self, StoreError> {
        let mut store = KeyStore::open(&data_dir.join(REPLICA_DIR))?;
        // From the first change on, this replica writes only to the store its copy is of.
        shared.copy_of(store.copy_position()?.epoch);
        store.shared = Some(shared);
        Ok(store)
    }

    /// The link to Redis, when this store is a replica's copy of a shared store.
    pub fn shared(&self) -> Option<&Arc<Redis>> {
        self.shared.as_ref().map(|shared| &shared.redis)
    }

    /// The change number this replica's copy has applied, as it moves (`None` for a gateway's own store).
    pub(crate) fn copy_seq(&self) -> Option<Arc<AtomicU64>> {
        self.shared.as_ref().map(|shared| Arc::clone(&shared.copy_seq))
    }
}

impl From<ClusterError> for StoreError {
    fn from(err: ClusterError) -> Self {
        StoreError::Shared(err)
    }
}
