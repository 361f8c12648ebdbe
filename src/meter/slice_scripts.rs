//! The Lua scripts by which a replica takes slices of a key's request and token window out of Redis and
//! gives back what it did not use (`slices.rs` sends them).

/// Takes up to `ARGV[2]` requests and `ARGV[4]` tokens of a window (`KEYS[1]`) limited to `ARGV[1]`
/// requests and `ARGV[3]` tokens ('' when not limited): all or nothing, nothing when a part asked for is
/// used up (answered as 1: requests, 2: tokens). Answers what it took, the window's counts after, the
/// milliseconds it has left and when it started. A window it creates lasts `ARGV[5]` ms and starts at
/// `ARGV[6]`, as the admission script's.
pub(super) const TAKE: &str = r#"
local counts = redis.call('HMGET', KEYS[1], 'requests', 'tokens')
local requests, tokens = tonumber(counts[1]) or 0, tonumber(counts[2]) or 0
local function room(limit, count)
  if ARGV[limit] == '' then return 0 end
  return math.max(tonumber(ARGV[limit]) - count, 0)
end
local want_requests, want_tokens = tonumber(ARGV[2]), tonumber(ARGV[4])
local take_requests, take_tokens = math.min(room(1, requests), want_requests), math.min(room(3, tokens), want_tokens)
local short = 0
if want_requests > 0 and take_requests == 0 then short = 1 elseif want_tokens > 0 and take_tokens == 0 then short = 2 end
if short > 0 then
  take_requests, take_tokens = 0, 0
elseif take_requests + take_tokens > 0 then
  redis.call('HINCRBY', KEYS[1], 'requests', take_requests)
  redis.call('HINCRBY', KEYS[1], 'tokens', take_tokens)
  if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
    redis.call('HSET', KEYS[1], 'start', ARGV[6])
  end
end
local start = tonumber(redis.call('HGET', KEYS[1], 'start') or '0')
return {short, take_requests, take_tokens, requests + take_requests, tokens + take_tokens, redis.call('PTTL', KEYS[1]), start}
"#;

/// Gives `ARGV[1]` unused requests and `ARGV[3]` unused tokens back to a window (`KEYS[1]`), if it is still
/// the one that started at `ARGV[2]` (a window that ended took them with it); never below 0.
pub(super) const GIVE_BACK: &str = r#"
if redis.call('HGET', KEYS[1], 'start') ~= ARGV[2] then return 0 end
if redis.call('HINCRBY', KEYS[1], 'requests', -tonumber(ARGV[1])) < 0 then redis.call('HSET', KEYS[1], 'requests', 0) end
if redis.call('HINCRBY', KEYS[1], 'tokens', -tonumber(ARGV[3])) < 0 then redis.call('HSET', KEYS[1], 'tokens', 0) end
return 1
"#;
