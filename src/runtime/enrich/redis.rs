//! Redis lookups: one pipeline of `GET`s per batch (one round trip), over a reconnecting
//! multiplexed connection.

use super::{timeout_of, LookupError, DEFAULT_RETRIES, DEFAULT_TIMEOUT};
use crate::config::raw::RawExternalStore;
use crate::config::TlsMode;
use crate::expr::Value;
use crate::runtime::connect::tls;
use crate::runtime::retry::RetryPolicy;
use crate::runtime::RuntimeError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisConnectionInfo};
use std::time::Duration;

/// A connected Redis external store.
#[derive(Clone)]
pub struct RedisLookup {
    store: String,
    address: String,
    conn: ConnectionManager,
    timeout: Duration,
    retry: RetryPolicy,
    secrets: Vec<String>,
}

impl std::fmt::Debug for RedisLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLookup")
            .field("store", &self.store)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Remove every secret from a message.
pub(crate) fn scrub(mut msg: String, secrets: &[String]) -> String {
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        msg = msg.replace(s.as_str(), "***");
    }
    msg
}

/// What the client connects with. An empty `username` or `password` (as
/// `password: "${REDIS_PASSWORD:-}"` gives when the variable is unset) means none: no `AUTH`
/// is sent without a password, as for the databases.
fn connection_info(raw: &RawExternalStore, host: String, port: u16) -> ConnectionInfo {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mode = raw.tls.mode().unwrap_or(TlsMode::Disable);
    let addr = if mode.required() {
        ConnectionAddr::TcpTls {
            host,
            port,
            // `require` without `sslrootcert` checks nothing about the certificate.
            insecure: tls::effective(mode, raw.tls.root_cert().as_deref()) == TlsMode::Require,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    };
    ConnectionInfo {
        addr,
        redis: RedisConnectionInfo {
            db: raw.db.as_ref().map_or(0, |d| d.value),
            username: raw.username.as_ref().and_then(|u| non_empty(&u.value)),
            password: raw
                .password
                .as_ref()
                .and_then(|p| non_empty(p.value.expose())),
            protocol: ProtocolVersion::RESP2,
        },
    }
}

/// The client: plain TCP, or TLS (`sslmode` `require`, `verify-ca` or `verify-full`, or
/// `tls: true`) trusting the built-in Mozilla roots, or only the certificates of
/// `sslrootcert` when it is given, and presenting `sslcert`/`sslkey` when given. Redis has
/// no TLS negotiation, so `allow` and `prefer` connect in plain text. An error names the
/// file that could not be read.
fn client(raw: &RawExternalStore, mut info: ConnectionInfo) -> Result<redis::Client, String> {
    if !matches!(info.addr, ConnectionAddr::TcpTls { .. }) {
        return redis::Client::open(info).map_err(|e| e.to_string());
    }
    tls::install_default_provider();
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
    };
    let root_cert = match raw.tls.root_cert() {
        Some(p) => {
            // Read through the shared reader too, for its message on a file with no
            // certificate in it.
            tls::read_root_certs(&p)?;
            Some(read("sslrootcert", &p)?)
        }
        None => None,
    };
    let client_tls = match raw.tls.client_cert() {
        Some((cert, key)) => Some(redis::ClientTlsConfig {
            client_cert: read("sslcert", &cert)?,
            client_key: read("sslkey", &key)?,
        }),
        None => None,
    };
    let verify_ca = tls::effective(
        raw.tls.mode().unwrap_or(TlsMode::Disable),
        raw.tls.root_cert().as_deref(),
    ) == TlsMode::VerifyCa;
    if root_cert.is_some() || client_tls.is_some() {
        let certs = redis::TlsCertificates {
            client_tls,
            root_cert,
        };
        info = redis::Client::build_with_tls(info, certs)
            .map_err(|e| e.to_string())?
            .get_connection_info()
            .clone();
    }
    if verify_ca {
        info.addr.set_danger_accept_invalid_hostnames(true);
    }
    redis::Client::open(info).map_err(|e| e.to_string())
}

impl RedisLookup {
    /// Connect (and authenticate, and select `db`) now. Defaults: host 127.0.0.1, port
    /// 6379, db 0, timeout 10 s (connect and each round trip), 3 retries on connection
    /// failures.
    pub async fn connect(raw: &RawExternalStore) -> Result<RedisLookup, RuntimeError> {
        let host = raw
            .host
            .as_ref()
            .map_or_else(|| "127.0.0.1".to_string(), |h| h.value.clone());
        let port = match &raw.port {
            None => 6379,
            Some(p) => u16::try_from(p.value).map_err(|_| {
                RuntimeError::Config(format!(
                    "external store `{}`: port {} is out of range",
                    raw.name.value, p.value
                ))
            })?,
        };
        let address = format!("{host}:{port}");
        let info = connection_info(raw, host, port);
        let secrets: Vec<String> = info.redis.password.iter().cloned().collect();
        let timeout = timeout_of(raw.timeout.as_ref().map(|t| t.value), DEFAULT_TIMEOUT);
        let retries = raw.retries.as_ref().map_or(DEFAULT_RETRIES, |r| r.value);
        let connect_err = |e: redis::RedisError| {
            let mut message = scrub(e.to_string(), &secrets);
            if let Some(h) = tls::hint(&message) {
                message = format!("{message} ({h})");
            }
            RuntimeError::ExternalConnect {
                store: raw.name.value.clone(),
                host: address.clone(),
                message,
            }
        };
        let client = client(raw, info).map_err(|e| RuntimeError::ExternalConnect {
            store: raw.name.value.clone(),
            host: address.clone(),
            message: e,
        })?;
        // Reconnection waits 1 s, then twice as long each time, at most 5 s (the crate's
        // default factor of 100 made the second wait 60 s: an unreachable server looked
        // like a hang).
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_factor(2)
            .set_max_delay(5_000)
            .set_number_of_retries(retries as usize);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(connect_err)?;
        Ok(RedisLookup {
            store: raw.name.value.clone(),
            address: address.clone(),
            conn,
            timeout,
            retry: RetryPolicy::new(retries),
            secrets,
        })
    }

    /// `GET` every key in one pipeline (one round trip). A missing key gives
    /// [`Value::Null`], a value that is not UTF-8 an error for that key; when the round trip
    /// itself fails (after retries on connection errors and timeouts) every key gets the
    /// error. When the server refuses a command of the pipeline (a key holding a hash or a
    /// list: `WRONGTYPE`), which fails the pipeline as a whole, the keys are asked again one
    /// `GET` each (sent together over the one connection), so that only the keys the server
    /// refuses get an error.
    pub async fn get_many(&self, keys: &[String]) -> Vec<Result<Value, LookupError>> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.get(k);
        }
        let mut attempt = 0;
        let reply: Result<Vec<Option<Vec<u8>>>, Failure> = loop {
            let mut conn = self.conn.clone();
            let res = tokio::time::timeout(self.timeout, pipe.query_async(&mut conn)).await;
            let retryable = match &res {
                Ok(Ok(_)) => false,
                Ok(Err(e)) => transient(e),
                Err(_) => true,
            };
            if retryable && attempt < self.retry.retries {
                tokio::time::sleep(self.retry.backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            break match res {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) if transient(&e) => Err(Failure::Transport(self.scrubbed(&e))),
                Ok(Err(_)) => Err(Failure::Refused),
                Err(_) => Err(Failure::Transport(format!(
                    "timed out after {:?}",
                    self.timeout
                ))),
            };
        };
        match reply {
            Ok(values) if values.len() == keys.len() => values
                .into_iter()
                .zip(keys)
                .map(|(v, k)| text_of(k, v))
                .collect(),
            Ok(values) => {
                let msg = format!(
                    "redis {} returned {} replies for {} keys",
                    self.address,
                    values.len(),
                    keys.len()
                );
                keys.iter().map(|_| Err(LookupError(msg.clone()))).collect()
            }
            Err(Failure::Refused) => self.get_each(keys).await,
            Err(Failure::Transport(m)) => {
                let msg = format!("redis {}: {m}", self.address);
                keys.iter().map(|_| Err(LookupError(msg.clone()))).collect()
            }
        }
    }

    /// One `GET` per key, all sent at once over the multiplexed connection (which writes
    /// them out together), each with its own reply or error.
    async fn get_each(&self, keys: &[String]) -> Vec<Result<Value, LookupError>> {
        let gets = keys.iter().map(|k| {
            let mut conn = self.conn.clone();
            async move {
                let res = tokio::time::timeout(
                    self.timeout,
                    redis::cmd("GET")
                        .arg(k)
                        .query_async::<Option<Vec<u8>>>(&mut conn),
                )
                .await;
                match res {
                    Ok(Ok(v)) => text_of(k, v),
                    Ok(Err(e)) => Err(LookupError(format!(
                        "redis {}: key `{k}`: {}",
                        self.address,
                        self.scrubbed(&e)
                    ))),
                    Err(_) => Err(LookupError(format!(
                        "redis {}: key `{k}`: timed out after {:?}",
                        self.address, self.timeout
                    ))),
                }
            }
        });
        futures_util::future::join_all(gets).await
    }

    fn scrubbed(&self, e: &redis::RedisError) -> String {
        scrub(e.to_string(), &self.secrets)
    }
}

/// Why a pipeline got no replies.
enum Failure {
    /// The connection failed or timed out (after the retries): every key fails with it.
    Transport(String),
    /// The server answered a command of the pipeline with an error: each key is asked
    /// again on its own, and gets its own reply or error.
    Refused,
}

/// A connection error or a timeout, worth another attempt.
fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
}

/// The looked-up value of `key`: NULL when missing, text when UTF-8.
fn text_of(key: &str, v: Option<Vec<u8>>) -> Result<Value, LookupError> {
    match v {
        None => Ok(Value::Null),
        Some(bytes) => String::from_utf8(bytes)
            .map(Value::Str)
            .map_err(|_| LookupError(format!("the value of key `{key}` is not UTF-8 text"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawConfig;

    fn store(yaml_store: &str) -> RawExternalStore {
        let yaml = format!("datastores: []\nexternalstores:\n  - {yaml_store}\npipelines: []\n");
        let env: std::collections::HashMap<String, String> =
            [("SET_PW".to_string(), "pw".to_string())].into();
        let loaded = crate::config::load("t.yaml", &yaml, &env).unwrap_or_else(|d| panic!("{d:?}"));
        let raw: RawConfig = loaded.raw;
        raw.externalstores[0].clone()
    }

    #[test]
    fn empty_credentials_are_no_credentials() {
        let raw = store(
            r#"{name: c, type: redis, username: "${UNSET_USER:-}", password: "${UNSET_PW:-}"}"#,
        );
        let info = connection_info(&raw, "h".into(), 1);
        assert_eq!(info.redis.username, None);
        assert_eq!(info.redis.password, None);

        let raw = store(r#"{name: c, type: redis, username: app, password: "${SET_PW}", db: 3}"#);
        let info = connection_info(&raw, "h".into(), 1);
        assert_eq!(info.redis.username.as_deref(), Some("app"));
        assert_eq!(info.redis.password.as_deref(), Some("pw"));
        assert_eq!(info.redis.db, 3);
    }
}
