//! Buckets every instance shares, in Redis: the same GCRA as `governor`, run atomically by one Lua
//! script on Redis's own clock (instances' clocks do not matter), each call bounded by a timeout.
//!
//! Only an answer that is the script's counts: each call carries a nonce the script echoes, so
//! a stranger answering at the Redis address (`:0` to everything would let every request
//! through) or a connection that fell out of step (answers to requests given up on arriving
//! late, each then taken for the next one's) is a failure, never "allowed"; the connection is
//! then made anew.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use secrecy::{ExposeSecret, SecretString};

use super::{Quota, RetryAfter};
use crate::config::ConfigError;

/// Returns the caller's nonce and 0 when the request is allowed, else the microseconds to wait.
/// The bucket's value is its theoretical arrival time (µs since the epoch, Redis's `TIME`),
/// kept no longer than it matters.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat - now > tolerance then
  return {ARGV[3], tat - tolerance - now}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX',
           math.max(1, math.ceil((next_tat - now) / 1000)))
return {ARGV[3], 0}
";

/// Redis did not answer in time, answered an error, or answered something else than the script.
#[derive(Debug)]
pub struct Unanswered;

pub struct SharedBuckets {
    client: Client,
    config: ConnectionManagerConfig,
    connection: Mutex<ConnectionManager>,
    gcra: Script,
    timeout: Duration,
}

impl SharedBuckets {
    /// Connects lazily: a Redis that is down at start-up is an outage like any other. A
    /// `rediss://` URL speaks TLS (to a server whose certificate chains to `ca`, when given);
    /// a user and password in it are Redis ACL's.
    pub fn new(
        url: &SecretString,
        ca: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let unusable = |error: redis::RedisError| {
            ConfigError::about("rate_limit.redis_url", &format!("is not usable: {error}"))
        };
        let client = match ca {
            None => Client::open(url.expose_secret()),
            Some(ca) => {
                let root_cert = std::fs::read(ca).map_err(|error| {
                    ConfigError::about(
                        "rate_limit.redis_ca_path",
                        &format!("cannot be read ({}): {error}", ca.display()),
                    )
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                Client::build_with_tls(url.expose_secret(), certificates)
            }
        }
        .map_err(unusable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(unusable)?;
        Ok(Self {
            client,
            config,
            connection: Mutex::new(connection),
            gcra: Script::new(GCRA),
            timeout,
        })
    }

    pub async fn check(
        &self,
        key: &str,
        quota: Quota,
    ) -> Result<Result<(), RetryAfter>, Unanswered> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let mut invocation = self.gcra.key(key);
        invocation
            .arg(quota.interval_micros())
            .arg(quota.tolerance_micros())
            .arg(&nonce);
        let mut connection = self.connection();
        let answer = tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<(String, i64)>(&mut connection),
        )
        .await;
        let wait = match answer {
            Ok(Ok((echoed, wait))) if echoed == nonce && wait >= 0 => wait,
            _ => {
                self.reconnect();
                return Err(Unanswered);
            }
        };
        Ok(match wait {
            0 => Ok(()),
            micros => Err(RetryAfter::from(Duration::from_micros(micros as u64))),
        })
    }

    /// Whether Redis answers now, as itself.
    pub async fn answers(&self) -> bool {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let mut connection = self.connection();
        let mut echo = redis::cmd("ECHO");
        echo.arg(&nonce);
        let echoed =
            tokio::time::timeout(self.timeout, echo.query_async::<String>(&mut connection));
        let answered = matches!(echoed.await, Ok(Ok(echoed)) if echoed == nonce);
        if !answered {
            self.reconnect();
        }
        answered
    }

    fn connection(&self) -> ConnectionManager {
        self.connection.lock().expect("no holder panics").clone()
    }

    /// A connection that may hold answers to requests given up on is never used again.
    fn reconnect(&self) {
        if let Ok(fresh) =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
        {
            *self.connection.lock().expect("no holder panics") = fresh;
        }
    }
}
