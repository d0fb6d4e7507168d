//! Live-state generations: keys of generation N live under `<base>:g<N>`, and
//! the hash `<base>:generations` maps `g<N>` to its state. Every change of
//! the hash is one Lua script, so readers see one live generation at a time.

use redis::aio::ConnectionManager;

use super::Generations;
use crate::live;

/// Creates the next generation: numbered after every existing one.
const BEGIN: &str = r"
local states = redis.call('HGETALL', KEYS[1])
local top = 0
for i = 1, #states, 2 do
  if states[i + 1] == 'building' then return redis.error_reply('a generation is already building') end
  local n = tonumber(string.sub(states[i], 2))
  if n > top then top = n end
end
redis.call('HSET', KEYS[1], 'g' .. (top + 1), 'building')
return top + 1
";

/// Makes ARGV[1] live (it must be building) and retires the live one.
const SWITCH: &str = r"
local field = 'g' .. ARGV[1]
if redis.call('HGET', KEYS[1], field) ~= 'building' then
  return redis.error_reply('generation ' .. ARGV[1] .. ' is not building')
end
local states = redis.call('HGETALL', KEYS[1])
for i = 1, #states, 2 do
  if states[i + 1] == 'live' then redis.call('HSET', KEYS[1], states[i], 'retired') end
end
redis.call('HSET', KEYS[1], field, 'live')
return 1
";

/// The live generation, creating and switching to the first one if none is.
const ENSURE_LIVE: &str = r"
local states = redis.call('HGETALL', KEYS[1])
local building = nil
local top = 0
for i = 1, #states, 2 do
  local n = tonumber(string.sub(states[i], 2))
  if states[i + 1] == 'live' then return n end
  if states[i + 1] == 'building' then building = n end
  if n > top then top = n end
end
local first = building or (top + 1)
redis.call('HSET', KEYS[1], 'g' .. first, 'live')
return first
";

/// Makes ARGV[1] live, unless some generation is live already.
const RECLAIM: &str = r"
local states = redis.call('HGETALL', KEYS[1])
for i = 2, #states, 2 do
  if states[i] == 'live' then return 0 end
end
redis.call('HSET', KEYS[1], 'g' .. ARGV[1], 'live')
return 1
";

#[derive(Clone)]
pub struct RedisGenerations {
    redis: ConnectionManager,
    base: String,
}

impl std::fmt::Debug for RedisGenerations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisGenerations")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl RedisGenerations {
    pub fn new(redis: ConnectionManager, base: &str) -> Self {
        Self {
            redis,
            base: base.to_owned(),
        }
    }

    /// The key prefix of `generation`.
    pub fn prefix(base: &str, generation: u32) -> String {
        format!("{base}:g{generation}")
    }

    fn register(&self) -> String {
        format!("{}:generations", self.base)
    }

    async fn states(&self) -> Result<Vec<(u32, String)>, redis::RedisError> {
        let states: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.register())
            .query_async(&mut self.redis.clone())
            .await?;
        let mut parsed: Vec<(u32, String)> = states
            .into_iter()
            .filter_map(|(field, state)| Some((field.strip_prefix('g')?.parse().ok()?, state)))
            .collect();
        parsed.sort();
        Ok(parsed)
    }

    async fn in_state(&self, state: &str) -> Result<Vec<u32>, redis::RedisError> {
        Ok(self
            .states()
            .await?
            .into_iter()
            .filter(|(_, s)| s == state)
            .map(|(g, _)| g)
            .collect())
    }
}

impl Generations for RedisGenerations {
    type Error = redis::RedisError;

    fn projection(&self) -> &'static str {
        live::NAME
    }

    async fn live(&self) -> Result<Option<u32>, redis::RedisError> {
        Ok(self.in_state("live").await?.pop())
    }

    async fn building(&self) -> Result<Option<u32>, redis::RedisError> {
        Ok(self.in_state("building").await?.pop())
    }

    async fn retired(&self) -> Result<Vec<u32>, redis::RedisError> {
        self.in_state("retired").await
    }

    async fn begin(&self) -> Result<u32, redis::RedisError> {
        let generation: u32 = redis::Script::new(BEGIN)
            .key(self.register())
            .invoke_async(&mut self.redis.clone())
            .await?;
        // A leftover from a discarded attempt must not leak into the new one.
        self.delete_keys(generation).await?;
        Ok(generation)
    }

    async fn switch(&self, generation: u32) -> Result<(), redis::RedisError> {
        redis::Script::new(SWITCH)
            .key(self.register())
            .arg(generation)
            .invoke_async::<i64>(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    async fn discard(&self, generation: u32) -> Result<(), redis::RedisError> {
        let states = self.states().await?;
        match states.iter().find(|(g, _)| *g == generation) {
            Some((_, state)) if state == "live" => Ok(()),
            _ => {
                redis::cmd("HDEL")
                    .arg(self.register())
                    .arg(format!("g{generation}"))
                    .query_async::<i64>(&mut self.redis.clone())
                    .await?;
                self.delete_keys(generation).await
            }
        }
    }

    async fn applied(&self, generation: u32) -> Result<Vec<(String, i32, i64)>, redis::RedisError> {
        let state =
            live::LiveState::pinned(self.redis.clone(), &Self::prefix(&self.base, generation));
        state.applied_offsets().await
    }

    async fn reclaim(&self, generation: u32) -> Result<bool, redis::RedisError> {
        let reclaimed: i64 = redis::Script::new(RECLAIM)
            .key(self.register())
            .arg(generation)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(reclaimed == 1)
    }

    async fn ensure_live(&self) -> Result<u32, redis::RedisError> {
        redis::Script::new(ENSURE_LIVE)
            .key(self.register())
            .invoke_async(&mut self.redis.clone())
            .await
    }
}

impl RedisGenerations {
    async fn delete_keys(&self, generation: u32) -> Result<(), redis::RedisError> {
        let pattern = format!("{}:*", Self::prefix(&self.base, generation));
        let mut redis = self.redis.clone();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut redis)
                .await?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<i64>(&mut redis)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
