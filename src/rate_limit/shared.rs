//! Buckets every instance shares, in Redis: the same GCRA as `governor`, run atomically by one Lua
//! script on Redis's own clock (instances' clocks do not matter), each call bounded by a timeout.

use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};

use super::{Quota, RetryAfter};
use crate::config::ConfigError;

/// Returns 0 when the request is allowed, else the microseconds to wait. The bucket's value is
/// its theoretical arrival time (µs since the epoch, Redis's `TIME`), kept no longer than it
/// matters.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat - now > tolerance then
  return tat - tolerance - now
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX',
           math.max(1, math.ceil((next_tat - now) / 1000)))
return 0
";

/// Redis did not answer in time, or answered an error.
#[derive(Debug)]
pub struct Unanswered;

pub struct SharedBuckets {
    connection: ConnectionManager,
    gcra: Script,
    timeout: Duration,
}

impl SharedBuckets {
    /// Connects lazily: a Redis that is down at start-up is an outage like any other.
    pub fn new(url: &SecretString, timeout: Duration) -> Result<Self, ConfigError> {
        let unusable = |error: redis::RedisError| {
            ConfigError(format!(
                "rate_limit.redis_url (APP__RATE_LIMIT__REDIS_URL) is not usable: {error}"
            ))
        };
        let client = redis::Client::open(url.expose_secret()).map_err(unusable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, config)
                .map_err(unusable)?,
            gcra: Script::new(GCRA),
            timeout,
        })
    }

    pub async fn check(
        &self,
        key: &str,
        quota: Quota,
    ) -> Result<Result<(), RetryAfter>, Unanswered> {
        let mut connection = self.connection.clone();
        let mut invocation = self.gcra.key(key);
        invocation
            .arg(quota.interval_micros())
            .arg(quota.tolerance_micros());
        let wait: i64 =
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| Unanswered)?
                .map_err(|_| Unanswered)?;
        Ok(match wait {
            0 => Ok(()),
            micros => Err(RetryAfter::from(Duration::from_micros(
                micros.unsigned_abs(),
            ))),
        })
    }

    /// Whether Redis answers now.
    pub async fn answers(&self) -> bool {
        let mut connection = self.connection.clone();
        let ping = redis::cmd("PING");
        let answer = ping.query_async::<String>(&mut connection);
        matches!(tokio::time::timeout(self.timeout, answer).await, Ok(Ok(_)))
    }
}
