//! The admission script replicas run in Redis (`shared.rs` sends it): one atomic check and count of a
//! request's windows, its parallel slot and its budget hold, with the slots and holds of replicas that died
//! (their heartbeat ended, `heartbeat.rs`) given back before a request is refused for them.

/// KEYS: the key's window, its model window, its slots, the verdict, its spend sums, its holds (leases and
/// dollars). ARGV: now, the window's length, rpm, tpm, model rpm, model tpm, parallel (each '' when not
/// limited), the slot backstop, the request id (`<replica>:<random>`), how long the verdict is kept,
/// max_budget ('' when none), the budget's base and period, the dollars to hold, the hold backstop, the
/// tokens to hold in the key's window, and in its model window, the prefix of replicas' heartbeats, this
/// replica's id and its heartbeat lease.
///
/// A slot or hold is kept while its replica's heartbeat lives (a stream of any length keeps its slot), and
/// given back once the heartbeat ended: checked only when the slots are full, or the budget is used up with
/// holds in it, so an admission that passes pays nothing for it. The backstop (a day) bounds what a live
/// replica's lost release can hold; members without a replica (written before heartbeats) keep their lease.
pub(super) const ADMIT: &str = r#"
-- Asked again (its answer was late or lost): the verdict already given, nothing counted twice.
local given = redis.call('GET', KEYS[4])
if given then
  local verdict = {}
  for n in string.gmatch(given, '[^,]+') do verdict[#verdict + 1] = tonumber(n) end
  return verdict
end
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local function used(key)
  local counts = redis.call('HMGET', key, 'requests', 'tokens')
  return tonumber(counts[1]) or 0, tonumber(counts[2]) or 0, redis.call('PTTL', key)
end
local function over(limit, count) return ARGV[limit] ~= '' and count >= tonumber(ARGV[limit]) end
-- Whether the replica that took a slot or hold (its id before ':') still has its heartbeat; asked once each.
local seen = {}
local function alive(member)
  local replica = string.match(member, '^(%x+):')
  if not replica then return true end
  if seen[replica] == nil then seen[replica] = redis.call('EXISTS', ARGV[18] .. replica) == 1 end
  return seen[replica]
end
-- This replica's heartbeat exists before what it takes can be judged by it (its first admissions may come
-- before its first renewal).
local function beat() redis.call('SET', ARGV[18] .. ARGV[19], '1', 'PX', ARGV[20], 'NX') end
-- Holds' leases run on Redis's clock: a replica whose clock is ahead must not end the others' holds.
local function redis_now()
  if redis.replicate_commands then redis.replicate_commands() end
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
local held_now = 0
local function drop_hold(id)
  local dollars = redis.call('HGET', KEYS[7], id)
  if dollars then
    redis.call('HINCRBYFLOAT', KEYS[7], 'total', '-' .. dollars)
    redis.call('HDEL', KEYS[7], id)
  end
end
local function held_total()
  if redis.call('ZCARD', KEYS[6]) > 0 then
    return math.max(tonumber(redis.call('HGET', KEYS[7], 'total') or '0'), 0)
  end
  redis.call('DEL', KEYS[7])
  return 0
end
-- What every replica spent this budget period, and that plus what requests in flight on every replica hold
-- (holds past their backstop, and, when they would refuse, holds of replicas that died, dropped first).
local function committed()
  held_now = redis_now()
  local ended = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', held_now)
  for _, id in ipairs(ended) do drop_hold(id) end
  if #ended > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', held_now) end
  local spent = math.min(tonumber(ARGV[12]) + (tonumber(redis.call('HGET', KEYS[5], ARGV[13]) or '0')), 1e12)
  local held = held_total()
  if held > 0 and spent + held >= tonumber(ARGV[11]) then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
      if not alive(id) then
        drop_hold(id)
        redis.call('ZREM', KEYS[6], id)
      end
    end
    held = held_total()
  end
  return spent, spent + held
end
local function decide()
  if ARGV[11] ~= '' then
    local spent, committed_now = committed()
    if committed_now >= tonumber(ARGV[11]) then return {0, 6, math.floor(spent * 1000000)} end
  end
  local requests, tokens, left = used(KEYS[1])
  if over(3, requests) then return {0, 1, left} end
  if over(4, tokens) then return {0, 2, left} end
  local model_requests, model_tokens, model_left = 0, 0, 0
  local per_model = ARGV[5] ~= '' or ARGV[6] ~= ''
  if per_model then
    model_requests, model_tokens, model_left = used(KEYS[2])
    if over(5, model_requests) then return {0, 3, model_left} end
    if over(6, model_tokens) then return {0, 4, model_left} end
  end
  if ARGV[7] ~= '' then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
    if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) then
      -- Full: the slots of replicas that died are given back before the request is refused for them.
      for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
        if not alive(member) then redis.call('ZREM', KEYS[3], member) end
      end
      if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) then return {0, 5, 0} end
    end
    beat()
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[8]), ARGV[9])
    redis.call('PEXPIRE', KEYS[3], ARGV[8])
  end
  local function count(key)
    redis.call('HINCRBY', key, 'requests', 1)
    if redis.call('PTTL', key) < 0 then
      redis.call('PEXPIRE', key, window)
      redis.call('HSET', key, 'start', ARGV[1])
    end
  end
  if ARGV[3] ~= '' or ARGV[4] ~= '' then count(KEYS[1]) end
  -- The estimate, held in the window until the answer's count replaces it.
  if ARGV[4] ~= '' and ARGV[16] ~= '0' then redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[16]) end
  if per_model then count(KEYS[2]) end
  if ARGV[6] ~= '' and ARGV[17] ~= '0' then redis.call('HINCRBY', KEYS[2], 'tokens', ARGV[17]) end
  if ARGV[11] ~= '' and tonumber(ARGV[14]) > 0 then
    beat()
    redis.call('ZADD', KEYS[6], held_now + tonumber(ARGV[15]), ARGV[9])
    redis.call('HSET', KEYS[7], ARGV[9], ARGV[14])
    redis.call('HINCRBYFLOAT', KEYS[7], 'total', ARGV[14])
    redis.call('PEXPIRE', KEYS[6], ARGV[15])
    redis.call('PEXPIRE', KEYS[7], ARGV[15])
  end
  local start = tonumber(redis.call('HGET', KEYS[1], 'start') or '0')
  local model_start = 0
  if per_model then model_start = tonumber(redis.call('HGET', KEYS[2], 'start') or '0') end
  return {1, requests + 1, tokens, model_requests + 1, model_tokens, start, model_start}
end
local verdict = decide()
redis.call('SET', KEYS[4], table.concat(verdict, ','), 'PX', ARGV[10])
return verdict
"#;
