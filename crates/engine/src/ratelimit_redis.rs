//! The shared limiter: one Lua script per decision on Redis, so every instance pointed at the
//! same Redis enforces one limit. Time comes from Redis (`TIME`), not from the instances' clocks.

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::Script;

use crate::ratelimit::{Decision, DimResult, LimitSpec, RateLimiter};

/// GCRA over every key at once; writes only if all allow. ARGV per key: limit, window_ms, cost.
/// Returns `allowed` then, per key: allowed, remaining, reset_ms, retry_ms.
const CHECK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local out = {1}
local news = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[(i - 1) * 3 + 1])
  local window = tonumber(ARGV[(i - 1) * 3 + 2])
  local cost = tonumber(ARGV[(i - 1) * 3 + 3])
  local interval = window / math.max(limit, 1)
  local base = tonumber(redis.call('GET', key) or now)
  if base < now then base = now end
  local new_tat = base + cost * interval
  local allow_at = new_tat - window
  local allowed = allow_at <= now + 0.000001
  local after = base
  if allowed then after = new_tat else out[1] = 0 end
  local used = math.max(after - now, 0)
  local remaining = math.max(math.floor((window - used) / interval + 0.000001), 0)
  if remaining > limit then remaining = limit end
  local retry = 0
  if not allowed then
    if cost > limit then retry = window else retry = math.max(math.ceil(allow_at - now), 1) end
  end
  news[i] = new_tat
  table.insert(out, allowed and 1 or 0)
  table.insert(out, remaining)
  table.insert(out, math.ceil(used))
  table.insert(out, retry)
end
if out[1] == 1 then
  for i, key in ipairs(KEYS) do
    local ttl = math.ceil(news[i] - now) + 1000
    redis.call('SET', key, tostring(news[i]), 'PX', ttl)
  end
end
return out
"#;

/// Moves existing keys' TAT by delta × interval, never below now. ARGV per key: limit, window_ms; then delta.
const ADJUST: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local delta = tonumber(ARGV[#ARGV])
for i, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  if cur then
    local interval = tonumber(ARGV[(i - 1) * 2 + 2]) / math.max(tonumber(ARGV[(i - 1) * 2 + 1]), 1)
    local v = math.max(tonumber(cur) + delta * interval, now)
    local ttl = math.ceil(v - now) + 1000
    redis.call('SET', key, tostring(v), 'PX', ttl)
  end
end
return 1
"#;

pub struct Redis {
    conn: ConnectionManager,
    check: Script,
    adjust: Script,
}

impl Redis {
    /// Every command and connection attempt is bounded by `deadline`; a lost connection is
    /// re-established with short, bounded back-off (at most 500 ms apart), never minutes.
    pub async fn connect(url: &str, deadline: std::time::Duration) -> Result<Redis, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis url: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(deadline.max(std::time::Duration::from_millis(100)))
            .set_response_timeout(deadline)
            .set_number_of_retries(2)
            .set_factor(50)
            .set_exponent_base(2)
            .set_max_delay(500);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| format!("cannot connect to Redis: {e}"))?;
        Ok(Redis {
            conn,
            check: Script::new(CHECK),
            adjust: Script::new(ADJUST),
        })
    }
}

impl Redis {
    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| format!("redis: {e}"))
    }
}

#[async_trait]
impl RateLimiter for Redis {
    async fn check(&self, specs: &[LimitSpec]) -> Result<Decision, String> {
        let mut inv = self.check.prepare_invoke();
        for s in specs {
            inv.key(&s.key).arg(s.limit).arg(s.window_ms).arg(s.cost);
        }
        let mut conn = self.conn.clone();
        let out: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let dims = out
            .get(1..)
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(|c| DimResult {
                allowed: c[0] == 1,
                remaining: c[1].max(0) as u64,
                reset_ms: c[2].max(0) as u64,
                retry_ms: c[3].max(0) as u64,
            })
            .collect::<Vec<_>>();
        if dims.len() != specs.len() {
            return Err("redis: malformed rate-limit reply".to_owned());
        }
        Ok(Decision {
            allowed: out.first() == Some(&1),
            dims,
        })
    }

    async fn adjust(&self, specs: &[LimitSpec], delta: i64) -> Result<(), String> {
        if specs.is_empty() || delta == 0 {
            return Ok(());
        }
        let mut inv = self.adjust.prepare_invoke();
        for s in specs {
            inv.key(&s.key).arg(s.limit).arg(s.window_ms);
        }
        inv.arg(delta);
        let mut conn = self.conn.clone();
        let _: i64 = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        Ok(())
    }
}
