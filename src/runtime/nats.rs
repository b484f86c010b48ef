//! NATS sink and source (SPEC §5).
//!
//! **Sink** ([`NatsSink`]): one JSON message per row (an object keyed by sink column, in the
//! wire encoding of [`crate::runtime::transform::value_to_json`]) on the sink's `subject`,
//! else the datastore's. With a JetStream `stream` configured, messages go through
//! JetStream and every publish ack is awaited (at most [`MAX_IN_FLIGHT`] outstanding);
//! each carries a `Nats-Msg-Id` derived from what identifies the row's version: the
//! pipeline and subject, the row's key and a digest of its payload
//! ([`NatsSink::message_id`]). A re-run (or the re-run of a killed run) within the stream's
//! duplicate window publishes the same ids, which the stream acknowledges as duplicates
//! and does not store again; a changed row has a new id. A row without a key is its
//! content: identical rows of one run are numbered, so that each is a message of its own.
//! Past the duplicate window nothing remembers the ids, and every row is published again.
//! A row that changed back, within the window, to a version the window still holds is
//! dropped as a duplicate too (its previous version stays the last message of its key until
//! a run past the window publishes it again). Without a stream: core publish, then a flush.
//!
//! **Source** ([`NatsSource`]): consumes the datastore's `subject` in batches of the
//! source's `batch_size`, until `max_msgs` messages, `total_timeout` since the start, or
//! `per_msg_timeout` without a message. Each message is a JSON object decoded into a row
//! typed by the source fields. With a `stream`, a JetStream pull consumer (durable when
//! `durable` is set) delivers them and nothing is acknowledged until the caller calls
//! [`NatsAck::ack`] after the sink committed — an unacknowledged batch is redelivered (at
//! once when it is handed back with [`NatsAck::nak`], else after the consumer's ack wait).
//! A message that cannot be decoded is handed back too, with the rest of its pull.
//! Without a stream, a core subscription (queue group `queue`) is at-most-once and the ack
//! is a no-op.
//!
//! Tokens never appear in errors or logs.

use super::connect::tls;
use super::enrich::redis::scrub;
use super::enrich::timeout_of;
use super::transform::{row_from_json, value_to_json, write_row_json};
use super::{Row, RuntimeError};
use crate::config::raw::{RawConfig, RawDatastore};
use crate::config::redact::{redact_userinfo, userinfo_secrets};
use crate::config::TlsMode;
use crate::expr::Value;
use crate::ir::Pipeline;
use crate::types::Dtype;
use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;
use indexmap::IndexMap;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// JetStream publishes awaiting their ack at once, at most.
pub const MAX_IN_FLIGHT: usize = 256;
/// Default `per_msg_timeout` of a source.
pub const DEFAULT_PER_MSG_TIMEOUT: Duration = Duration::from_secs(5);
/// Default connect / request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a source that finds unacknowledged messages at start waits for them to come
/// back at once (handed back by the run before) before it waits out the ack wait.
const HANDED_BACK_WAIT: Duration = Duration::from_secs(1);
/// At most this many messages left unacknowledged are asked for in one pull at start; with
/// more, the run waits out the ack wait instead.
const MAX_HANDED_BACK: usize = 100_000;

/// Connection and consumption settings of a NATS datastore.
#[derive(Clone)]
pub struct NatsSettings {
    /// Datastore name.
    pub name: String,
    /// Server URLs (default `nats://127.0.0.1:4222`).
    pub servers: Vec<String>,
    /// Token (never shown).
    pub token: Option<crate::config::Secret>,
    /// Default subject.
    pub subject: Option<String>,
    /// Source queue group.
    pub queue: Option<String>,
    /// Source: stop after this many messages.
    pub max_msgs: Option<u64>,
    /// Source: stop when no message arrives for this long.
    pub per_msg_timeout: Duration,
    /// Source: stop after this long in total.
    pub total_timeout: Option<Duration>,
    /// JetStream stream.
    pub stream: Option<String>,
    /// JetStream durable consumer name (source).
    pub durable: Option<String>,
    /// Connect and request timeout.
    pub timeout: Duration,
    /// TLS: `sslmode`/`tls`; else `verify-full` for a `tls://` server or when a certificate
    /// file is given; else none asked for (TLS only when the server requires it, verified
    /// against the built-in roots).
    pub tls: Option<TlsMode>,
    /// `sslrootcert`: a PEM file of CA certificates trusted besides the built-in roots.
    pub root_cert: Option<std::path::PathBuf>,
    /// `sslcert` and `sslkey`: the client certificate presented to the server, and its key.
    pub client_cert: Option<tls::ClientCert>,
}

impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSettings")
            .field("name", &self.name)
            .field("servers", &self.shown_servers())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("subject", &self.subject)
            .field("queue", &self.queue)
            .field("max_msgs", &self.max_msgs)
            .field("per_msg_timeout", &self.per_msg_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("stream", &self.stream)
            .field("durable", &self.durable)
            .finish()
    }
}

impl NatsSettings {
    /// Settings of the datastore named `store` in `cfg`.
    pub fn from_config(cfg: &RawConfig, store: &str) -> Result<NatsSettings, RuntimeError> {
        let raw = cfg
            .datastores
            .iter()
            .find(|d| d.name.value == store)
            .ok_or_else(|| {
                RuntimeError::Config(format!("datastore `{store}` is not configured"))
            })?;
        Ok(NatsSettings::from_raw(raw))
    }

    /// Settings from a raw datastore entry.
    pub fn from_raw(d: &RawDatastore) -> NatsSettings {
        let mut servers: Vec<String> = d.servers.iter().map(|s| s.value.clone()).collect();
        if servers.is_empty() {
            let host = d.host.as_ref().map_or("127.0.0.1", |h| h.value.as_str());
            let port = d.port.as_ref().map_or(4222, |p| p.value);
            servers.push(format!("nats://{host}:{port}"));
        }
        NatsSettings {
            name: d.name.value.clone(),
            token: d.token.as_ref().map(|t| t.value.clone()),
            subject: d.subject.as_ref().map(|s| s.value.clone()),
            queue: d.queue.as_ref().map(|s| s.value.clone()),
            max_msgs: d
                .max_msgs
                .as_ref()
                .and_then(|m| u64::try_from(m.value).ok())
                .filter(|m| *m > 0),
            per_msg_timeout: timeout_of(
                d.per_msg_timeout.as_ref().map(|t| t.value),
                DEFAULT_PER_MSG_TIMEOUT,
            ),
            total_timeout: d
                .total_timeout
                .as_ref()
                .map(|t| t.value)
                .filter(|t| *t > 0.0)
                .and_then(|t| {
                    Duration::try_from_secs_f64(t.min(crate::config::raw::MAX_TIMEOUT)).ok()
                }),
            stream: d.stream.as_ref().map(|s| s.value.clone()),
            durable: d.durable.as_ref().map(|s| s.value.clone()),
            timeout: timeout_of(d.timeout.as_ref().map(|t| t.value), DEFAULT_TIMEOUT),
            tls: d.tls.mode().or_else(|| {
                let asked = servers.iter().any(|s| crate::config::urls::is_tls_url(s))
                    || d.tls.sslrootcert.is_some()
                    || d.tls.sslcert.is_some();
                asked.then_some(TlsMode::VerifyFull)
            }),
            root_cert: d.tls.root_cert(),
            client_cert: d
                .tls
                .client_cert()
                .map(|(cert, key)| tls::ClientCert { cert, key }),
            servers,
        }
    }

    /// The server URLs as shown in messages: credentials (`user:pw@`, `token@`) masked.
    pub fn shown_servers(&self) -> String {
        self.servers
            .iter()
            .map(|s| redact_userinfo(s))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.token.iter().map(|t| t.expose().to_string()).collect();
        for s in &self.servers {
            out.extend(userinfo_secrets(s, false));
        }
        out
    }

    fn err(&self, message: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::External {
            store: self.name.clone(),
            message: scrub(message.to_string(), &self.secrets()),
        }
    }

    /// Connect (with the token, if any).
    pub async fn connect(&self) -> Result<async_nats::Client, RuntimeError> {
        let mut opts = async_nats::ConnectOptions::new()
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .name("synctool");
        if let Some(t) = &self.token {
            opts = opts.token(t.expose().to_string());
        }
        let fail = |message: String| {
            let mut message = scrub(message, &self.secrets());
            if let Some(h) = tls::hint(&message) {
                message = format!("{message} ({h})");
            }
            RuntimeError::Connect {
                store: self.name.clone(),
                host: self.shown_servers(),
                message,
            }
        };
        match self.tls {
            None | Some(TlsMode::Disable) => {}
            Some(mode) => {
                let config =
                    tls::client_config(mode, self.root_cert.as_deref(), self.client_cert.as_ref())
                        .map_err(fail)?;
                opts = opts.tls_client_config(config).require_tls(mode.required());
            }
        }
        async_nats::connect_with_options(self.servers.as_slice(), opts)
            .await
            .map_err(|e| fail(e.to_string()))
    }
}

/// A NATS sink of one pipeline.
pub struct NatsSink {
    pipeline: String,
    settings: NatsSettings,
    client: async_nats::Client,
    js: Option<jetstream::Context>,
    subject: String,
    columns: Vec<String>,
    max_in_flight: usize,
    /// The prefix of every message id: a digest of the pipeline and the subject.
    id_prefix: String,
    /// Positions of the key's columns in a row (empty: the row has no key).
    key_columns: Vec<usize>,
    /// Keyless rows: how often each payload digest was published in this run, so that
    /// identical rows get ids of their own.
    occurrences: std::sync::Mutex<std::collections::HashMap<[u8; 16], u32>>,
    /// Messages the stream acknowledged as duplicates during this run.
    duplicates: std::sync::atomic::AtomicU64,
    /// Messages acknowledged during this run (duplicates included).
    acknowledged: std::sync::atomic::AtomicU64,
}

impl Drop for NatsSink {
    fn drop(&mut self) {
        let dups = *self.duplicates.get_mut();
        if dups > 0 {
            tracing::info!(
                pipeline = %self.pipeline,
                datastore = %self.settings.name,
                "{dups} of {} message(s) were already in the stream (published by an earlier run within its duplicate window) and were not stored again",
                self.acknowledged.get_mut()
            );
        }
    }
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("pipeline", &self.pipeline)
            .field("store", &self.settings.name)
            .field("subject", &self.subject)
            .field("jetstream", &self.js.is_some())
            .finish()
    }
}

/// What one [`NatsSink::publish_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublishReport {
    /// Messages published (and acknowledged, through JetStream), duplicates included.
    pub published: usize,
    /// Messages the stream reported as duplicates (already stored by an earlier attempt).
    pub duplicates: usize,
}

impl NatsSink {
    /// Connect the sink of `pipeline`: subject from the sink, else the datastore; with a
    /// `stream`, check that the stream exists (a missing stream is a clear error now rather
    /// than a "no responders" later).
    pub async fn connect(pipeline: &Pipeline, cfg: &RawConfig) -> Result<NatsSink, RuntimeError> {
        let settings = NatsSettings::from_config(cfg, &pipeline.sink.store.name)?;
        let subject = pipeline
            .sink
            .subject
            .clone()
            .or_else(|| settings.subject.clone())
            .ok_or_else(|| {
                RuntimeError::Config(format!(
                    "pipeline `{}`: NATS sink needs a `subject` (on the sink or datastore `{}`)",
                    pipeline.name, settings.name
                ))
            })?;
        let client = settings.connect().await?;
        let js = match &settings.stream {
            None => None,
            Some(stream) => {
                let js = jetstream::new(client.clone());
                js.get_stream(stream)
                    .await
                    .map_err(|e| settings.err(format!("JetStream stream `{stream}`: {e}")))?;
                Some(js)
            }
        };
        Ok(NatsSink {
            pipeline: pipeline.name.clone(),
            columns: pipeline
                .sink
                .fields
                .iter()
                .map(|f| f.column.clone())
                .collect(),
            settings,
            client,
            js,
            id_prefix: id_prefix(&pipeline.name, &subject),
            key_columns: pipeline
                .key
                .iter()
                .filter_map(|k| {
                    pipeline
                        .sink
                        .fields
                        .iter()
                        .position(|f| f.column == k.sink_column)
                })
                .collect(),
            subject,
            max_in_flight: MAX_IN_FLIGHT,
            occurrences: Default::default(),
            duplicates: Default::default(),
            acknowledged: Default::default(),
        })
    }

    /// The subject messages go to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The payload of one row: a JSON object keyed by sink column.
    pub fn payload(&self, row: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        write_row_json(&mut out, &self.columns, row);
        out
    }

    /// The JetStream message id (`Nats-Msg-Id`) of `row`, whose message is `payload`:
    /// `<pipeline and subject>.<key>.<payload>`, each part a hex digest (SHA-256, cut to 64
    /// or 128 bits), so that the same version of a row has the same id in every run, and a
    /// changed row a new one. A row without a key has an empty key part, and the second and
    /// later identical rows of a run the suffix `.<n>`.
    pub fn message_id(&self, row: &[Value], payload: &[u8]) -> String {
        let digest: [u8; 16] = Sha256::digest(payload)[..16].try_into().expect("16 bytes");
        if self.key_columns.is_empty() {
            let n = {
                let mut seen = self.occurrences.lock().expect("not poisoned");
                let n = seen.entry(digest).or_insert(0);
                *n += 1;
                *n - 1
            };
            let id = format!("{}..{}", self.id_prefix, hex::encode(digest));
            return if n == 0 { id } else { format!("{id}.{n}") };
        }
        let key: Vec<serde_json::Value> = self
            .key_columns
            .iter()
            .map(|&i| row.get(i).map_or(serde_json::Value::Null, value_to_json))
            .collect();
        let key = serde_json::to_vec(&key).expect("JSON values always serialise");
        format!(
            "{}.{}.{}",
            self.id_prefix,
            hex::encode(&Sha256::digest(&key)[..16]),
            hex::encode(digest)
        )
    }

    /// Publish one message per row. Through JetStream, returns once every message is
    /// acknowledged by the stream; otherwise once the client flushed them to the server.
    pub async fn publish_batch(&self, rows: &[Row]) -> Result<PublishReport, RuntimeError> {
        let mut report = PublishReport::default();
        match &self.js {
            Some(js) => {
                let mut pending: VecDeque<jetstream::context::PublishAckFuture> = VecDeque::new();
                for row in rows {
                    if pending.len() >= self.max_in_flight {
                        let f = pending.pop_front().expect("non-empty");
                        self.await_ack(f, &mut report).await?;
                    }
                    let payload = self.payload(row);
                    let id = self.message_id(row, &payload);
                    let f = js
                        .send_publish(
                            self.subject.clone(),
                            jetstream::message::PublishMessage::build()
                                .payload(payload.into())
                                .message_id(id),
                        )
                        .await
                        .map_err(|e| self.publish_err(e))?;
                    pending.push_back(f);
                }
                while let Some(f) = pending.pop_front() {
                    self.await_ack(f, &mut report).await?;
                }
            }
            None => {
                for row in rows {
                    self.client
                        .publish(self.subject.clone(), self.payload(row).into())
                        .await
                        .map_err(|e| self.publish_err(e))?;
                    report.published += 1;
                }
                self.client.flush().await.map_err(|e| self.publish_err(e))?;
            }
        }
        Ok(report)
    }

    async fn await_ack(
        &self,
        f: jetstream::context::PublishAckFuture,
        report: &mut PublishReport,
    ) -> Result<(), RuntimeError> {
        let ack = f.await.map_err(|e| self.publish_err(e))?;
        report.published += 1;
        self.acknowledged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if ack.duplicate {
            report.duplicates += 1;
            self.duplicates
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    fn publish_err(&self, e: impl std::fmt::Display) -> RuntimeError {
        // The caller names the pipeline.
        self.settings
            .err(format!("publish to `{}` failed: {e}", self.subject))
    }
}

/// An existing consumer must deliver what synctool promises: every message on the configured
/// subject, by pulls, each one kept until synctool acknowledges it after the sink commit.
/// A consumer that does not is refused before anything is consumed, naming the stream, the
/// consumer, the setting and what to do:
/// - another subject filter: reading it under the configured subject would skip that subject;
/// - a push consumer (a `deliver_subject`): synctool pulls;
/// - an ack policy other than `explicit`: with `none` the server forgets a message once it
///   is delivered, with `all` an ack covers every earlier message, so the batch of a killed
///   or failed run would be lost;
/// - a `max_deliver` limit: a message delivered that many times (a batch the sink refused,
///   or the batch of killed runs) is dropped by the server without being written;
/// - `headers_only`: the messages come without their rows.
fn check_consumer(
    settings: &NatsSettings,
    stream: &str,
    subject: &str,
    info: &jetstream::consumer::Info,
) -> Result<(), RuntimeError> {
    let name = settings.durable.as_deref().unwrap_or(info.name.as_str());
    let refuse = |what: String| {
        Err(settings.err(format!(
            "the durable consumer `{name}` on stream `{stream}` {what}"
        )))
    };
    let fix = "delete it and let synctool create it (its position is then lost), or recreate it the same way";
    let c = &info.config;
    if c.filter_subject != subject {
        let had = match c.filter_subject.as_str() {
            "" => "every subject of the stream".to_string(),
            f => format!("subject `{f}`"),
        };
        return refuse(format!(
            "reads {had}, not the configured `{subject}`; delete the consumer (its position is then lost) or give this subject another `durable` name"
        ));
    }
    if let Some(deliver) = &c.deliver_subject {
        return refuse(format!(
            "is a push consumer (deliver subject `{deliver}`); synctool needs a pull consumer: {fix}, without a deliver subject"
        ));
    }
    if c.ack_policy != AckPolicy::Explicit {
        let policy = match c.ack_policy {
            AckPolicy::None => "none",
            AckPolicy::All => "all",
            AckPolicy::Explicit => "explicit",
        };
        return refuse(format!(
            "has ack policy `{policy}`; synctool acknowledges each message after the sink committed it, which needs ack policy `explicit` (with `{policy}` the messages of an interrupted run are lost): {fix} with ack_policy explicit"
        ));
    }
    if c.max_deliver > 0 {
        return refuse(format!(
            "has max_deliver {}: the server drops a message delivered that many times (a batch the sink refused, or the batch of interrupted runs) without it being written: {fix} without max_deliver",
            c.max_deliver
        ));
    }
    if c.headers_only {
        return refuse(format!(
            "delivers headers only, without the messages' rows: {fix} without headers_only"
        ));
    }
    Ok(())
}

/// The first part of a sink's message ids: SHA-256 of the pipeline and the subject, cut to
/// 64 bits, in hex. Another pipeline, or another subject, never shares an id.
fn id_prefix(pipeline: &str, subject: &str) -> String {
    let mut h = Sha256::new();
    for part in [pipeline.as_bytes(), subject.as_bytes()] {
        h.update(part);
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..8])
}

enum Inbox {
    Core(async_nats::Subscriber),
    Js(Box<PullConsumer>),
}

/// A NATS source of one pipeline.
pub struct NatsSource {
    pipeline: String,
    settings: NatsSettings,
    client: async_nats::Client,
    subject: String,
    inbox: Inbox,
    /// Messages pulled at start (handed back by an earlier run), in stream order: the
    /// first batches take them before pulling again.
    ready: VecDeque<jetstream::Message>,
    fields: Vec<(String, String, Dtype)>,
    /// The source aliases of the pipeline's key: a message must give each a value.
    key: Vec<String>,
    batch_size: usize,
    /// The JetStream consumer's ack wait (zero for core NATS): a pull lasts at most half of
    /// it, so that a batch is written and acknowledged before its messages are redelivered.
    ack_wait: Duration,
    started: Instant,
    received: u64,
    done: bool,
    /// A decode failure met after some rows of a batch: those rows are returned first, the
    /// error on the next call.
    pending_error: Option<RuntimeError>,
}

impl std::fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSource")
            .field("pipeline", &self.pipeline)
            .field("store", &self.settings.name)
            .field("subject", &self.subject)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// A batch of decoded rows and the handle that acknowledges their messages.
#[derive(Debug)]
pub struct NatsBatch {
    /// Rows keyed by source alias, typed by the source fields.
    pub rows: Vec<IndexMap<String, Value>>,
    /// Acknowledge once the sink committed these rows.
    pub ack: NatsAck,
}

/// Acknowledges the messages of one [`NatsBatch`]. Dropping it without [`NatsAck::ack`]
/// leaves JetStream messages unacknowledged: the stream redelivers them after its ack wait.
#[derive(Debug)]
pub struct NatsAck {
    store: String,
    client: async_nats::Client,
    messages: Vec<jetstream::Message>,
}

impl NatsAck {
    /// Messages this handle acknowledges (0 for core NATS).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when there is nothing to acknowledge.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Acknowledge every message of the batch. The last ack waits for the server's
    /// confirmation; the server handles a connection's acks in order, so when it returns
    /// every earlier ack was applied too.
    pub async fn ack(self) -> Result<(), RuntimeError> {
        let err = |e: async_nats::Error| RuntimeError::External {
            store: self.store.clone(),
            message: format!("JetStream ack failed: {e}"),
        };
        let Some((last, rest)) = self.messages.split_last() else {
            return Ok(());
        };
        for m in rest {
            m.ack().await.map_err(err)?;
        }
        last.double_ack().await.map_err(err)?;
        Ok(())
    }

    /// Hand every message of the batch back to the stream (a negative acknowledgement), so
    /// that the next run gets them at once instead of after the consumer's ack wait. For a
    /// batch whose rows were not committed. Best effort: a message whose nak is lost is
    /// redelivered after the ack wait anyway.
    pub async fn nak(self) {
        nak_all(&self.store, &self.client, &self.messages).await;
    }
}

/// Negatively acknowledge `messages` (see [`NatsAck::nak`]) and flush, so that the naks
/// reach the server even when the process ends right after; failures are logged.
async fn nak_all(store: &str, client: &async_nats::Client, messages: &[jetstream::Message]) {
    let warn = |e: &dyn std::fmt::Display| {
        tracing::warn!(datastore = %store, error = %e, "JetStream nak failed; the messages are redelivered after the consumer's ack wait");
    };
    for m in messages {
        if let Err(e) = m.ack_with(AckKind::Nak(None)).await {
            warn(&e);
            return;
        }
    }
    if !messages.is_empty() {
        if let Err(e) = client.flush().await {
            warn(&e);
        }
    }
}

/// One pull of up to `want` messages, waiting at most `wait` for them: every message the
/// pull delivers, in stream order. The pull has ended when this returns, so that messages
/// handed back afterwards go to the next request, not to this one.
async fn pull(
    consumer: &mut PullConsumer,
    settings: &NatsSettings,
    want: usize,
    wait: Duration,
) -> Result<Vec<jetstream::Message>, RuntimeError> {
    let mut batch = consumer
        .batch()
        .max_messages(want)
        .expires(wait.max(Duration::from_millis(10)))
        .messages()
        .await
        .map_err(|e| settings.err(format!("JetStream pull: {e}")))?;
    let deadline = wait + Duration::from_secs(1);
    let mut msgs = Vec::with_capacity(want);
    loop {
        let next = match tokio::time::timeout(deadline, batch.next()).await {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => break,
        };
        msgs.push(next.map_err(|e| settings.err(format!("JetStream pull: {e}")))?);
    }
    // Redelivered messages may come after newer ones (handed back while others waited out
    // their ack wait): the newest value of a key must still be written last.
    msgs.sort_by_key(|m| m.info().map(|i| i.stream_sequence).unwrap_or(0));
    Ok(msgs)
}

impl NatsSource {
    /// Subscribe the source of `pipeline`: JetStream pull consumer when the datastore has a
    /// `stream` (the `durable` one, created if missing, filtered on the subject; ephemeral
    /// otherwise), else a core (queue) subscription.
    pub async fn connect(pipeline: &Pipeline, cfg: &RawConfig) -> Result<NatsSource, RuntimeError> {
        let settings = NatsSettings::from_config(cfg, &pipeline.source.store.name)?;
        let subject = settings.subject.clone().ok_or_else(|| {
            RuntimeError::Config(format!(
                "pipeline `{}`: NATS source datastore `{}` needs a `subject`",
                pipeline.name, settings.name
            ))
        })?;
        let client = settings.connect().await?;
        let mut ready = VecDeque::new();
        let mut batch_size = pipeline.source.batch_size.max(1) as usize;
        let mut ack_wait = Duration::ZERO;
        let inbox = match &settings.stream {
            Some(stream_name) => {
                let js = jetstream::new(client.clone());
                let stream = js
                    .get_stream(stream_name)
                    .await
                    .map_err(|e| settings.err(format!("JetStream stream `{stream_name}`: {e}")))?;
                let batch = i64::from(pipeline.source.batch_size.max(1));
                let config = pull::Config {
                    durable_name: settings.durable.clone(),
                    filter_subject: subject.clone(),
                    ack_policy: AckPolicy::Explicit,
                    // One batch in flight: a pull gets a whole batch (the server's default
                    // of 1,000 cut larger ones short), and the batch of a killed run holds
                    // back every newer message until it is redelivered, so that the newest
                    // value of a key is still written last.
                    max_ack_pending: batch,
                    inactive_threshold: if settings.durable.is_some() {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(300)
                    },
                    ..Default::default()
                };
                if let Some(d) = &settings.durable {
                    // An existing consumer is checked before it is used (a push consumer
                    // cannot be opened as a pull one at all).
                    if let Ok(info) = stream.consumer_info(d).await {
                        check_consumer(&settings, stream_name, &subject, &info)?;
                    }
                }
                let mut consumer: PullConsumer = match &settings.durable {
                    Some(d) => stream.get_or_create_consumer(d, config).await,
                    None => stream.create_consumer(config).await,
                }
                .map_err(|e| settings.err(format!("JetStream consumer on `{stream_name}`: {e}")))?;
                let info = consumer.info().await.map_err(|e| {
                    settings.err(format!("JetStream consumer on `{stream_name}`: {e}"))
                })?;
                check_consumer(&settings, stream_name, &subject, info)?;
                let allowed = info.config.max_ack_pending;
                if allowed <= 0 || allowed > batch {
                    tracing::warn!(
                        datastore = %settings.name,
                        "the existing durable consumer allows {} unacknowledged messages, more than batch_size ({batch}): after an interrupted run, its unacknowledged batch can come back after newer messages and overwrite their values; recreate it with max_ack_pending = batch_size",
                        if allowed <= 0 { "any number of".to_string() } else { allowed.to_string() }
                    );
                } else if allowed < batch {
                    // The server delivers no more than that before an ack: a larger batch
                    // would wait for messages that cannot come.
                    tracing::warn!(
                        datastore = %settings.name,
                        "the existing durable consumer allows {allowed} unacknowledged messages, fewer than batch_size ({batch}): batches of {allowed}"
                    );
                    batch_size = allowed as usize;
                }
                ack_wait = info.config.ack_wait;
                if info.num_ack_pending > 0 {
                    // Messages an earlier run did not acknowledge. Handed back (a nak), they
                    // come again at once; delivered to a run that was killed, only after the
                    // ack wait, and newer ones must not be written before them. The server
                    // counts both kinds alike, so ask for all of them in one pull (taken in
                    // stream order): when every one comes back, this run starts with them.
                    let pending = info.num_ack_pending;
                    let want = pending.min(MAX_HANDED_BACK).max(batch_size);
                    let wait = info.config.ack_wait.max(Duration::from_secs(1));
                    let mut back = pull(&mut consumer, &settings, want, HANDED_BACK_WAIT).await?;
                    let again = back
                        .iter()
                        .filter(|m| m.info().is_ok_and(|i| i.delivered > 1))
                        .count();
                    if again < pending {
                        // Some are still held for a run that is gone: hand these back too,
                        // wait for the rest, then ask for all of them again.
                        nak_all(&settings.name, &client, &back).await;
                        tracing::warn!(
                            datastore = %settings.name,
                            unacknowledged = pending,
                            "an earlier run left messages unacknowledged; waiting {wait:?} (the consumer's ack wait) for the server to deliver them again, before newer ones"
                        );
                        tokio::time::sleep(wait + Duration::from_millis(500)).await;
                        back = pull(&mut consumer, &settings, want, HANDED_BACK_WAIT).await?;
                    }
                    ready.extend(back);
                }
                Inbox::Js(Box::new(consumer))
            }
            None => {
                let sub = match &settings.queue {
                    Some(q) => client.queue_subscribe(subject.clone(), q.clone()).await,
                    None => client.subscribe(subject.clone()).await,
                }
                .map_err(|e| settings.err(format!("subscribe to `{subject}`: {e}")))?;
                // Make sure the server registered the interest before anyone publishes.
                client
                    .flush()
                    .await
                    .map_err(|e| settings.err(format!("subscribe to `{subject}`: {e}")))?;
                Inbox::Core(sub)
            }
        };
        Ok(NatsSource {
            pipeline: pipeline.name.clone(),
            fields: pipeline
                .source
                .fields
                .iter()
                .map(|f| (f.column.name.clone(), f.alias.clone(), f.dtype))
                .collect(),
            key: pipeline
                .key
                .iter()
                .map(|k| k.source_alias.clone())
                .collect(),
            batch_size,
            ack_wait,
            settings,
            client,
            subject,
            inbox,
            ready,
            started: Instant::now(),
            received: 0,
            done: false,
            pending_error: None,
        })
    }

    /// How many messages a run of `pipeline` would consume now, without consuming (nor
    /// creating) anything: with a `stream`, the `durable` consumer's pending and
    /// unacknowledged messages when it exists, else the stream's messages on the subject
    /// (where a new consumer starts); at most `max_msgs`. `None` for core NATS, which keeps
    /// no messages to count.
    pub async fn pending(
        pipeline: &Pipeline,
        cfg: &RawConfig,
    ) -> Result<Option<u64>, RuntimeError> {
        let settings = NatsSettings::from_config(cfg, &pipeline.source.store.name)?;
        let (Some(stream_name), Some(subject)) = (&settings.stream, &settings.subject) else {
            return Ok(None);
        };
        let client = settings.connect().await?;
        let js = jetstream::new(client.clone());
        let stream = js
            .get_stream(stream_name)
            .await
            .map_err(|e| settings.err(format!("JetStream stream `{stream_name}`: {e}")))?;
        let existing = match &settings.durable {
            Some(d) => stream.consumer_info(d).await.ok(),
            None => None,
        };
        let n = match existing {
            Some(info) => {
                check_consumer(&settings, stream_name, subject, &info)?;
                info.num_pending + info.num_ack_pending as u64
            }
            None => {
                let mut subjects = stream
                    .info_with_subjects(subject)
                    .await
                    .map_err(|e| settings.err(format!("JetStream stream `{stream_name}`: {e}")))?;
                let mut n = 0u64;
                while let Some(s) = subjects.next().await {
                    let (_, count) = s.map_err(|e| {
                        settings.err(format!("JetStream stream `{stream_name}`: {e}"))
                    })?;
                    n += count as u64;
                }
                n
            }
        };
        let _ = client.drain().await;
        Ok(Some(settings.max_msgs.map_or(n, |m| n.min(m))))
    }

    /// Messages received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// How many more messages this batch may take and how long the next wait may last;
    /// `None` when a limit is reached.
    fn budget(&self) -> Option<(usize, Duration)> {
        let mut want = self.batch_size;
        if let Some(max) = self.settings.max_msgs {
            let left = max.saturating_sub(self.received);
            if left == 0 {
                return None;
            }
            want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        let mut wait = self.settings.per_msg_timeout;
        if let Some(total) = self.settings.total_timeout {
            let left = total.saturating_sub(self.started.elapsed());
            if left.is_zero() {
                return None;
            }
            wait = wait.min(left);
        }
        Some((want, wait))
    }

    /// The next batch (up to `batch_size` rows), or `None` when the source is exhausted:
    /// `max_msgs` reached, `total_timeout` elapsed, or no message for `per_msg_timeout`.
    /// A message that is not a JSON object, or whose values do not fit the source fields,
    /// is an error (JetStream: it is not acknowledged, so nothing is lost); the rows decoded
    /// before it in the same batch are returned first, and the error on the next call.
    pub async fn next_batch(&mut self) -> Result<Option<NatsBatch>, RuntimeError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        if self.done {
            return Ok(None);
        }
        let mut rows = Vec::new();
        let mut acks = Vec::new();
        if let Err(e) = self.fill(&mut rows, &mut acks).await {
            if rows.is_empty() {
                return Err(e);
            }
            self.pending_error = Some(e);
        }
        if rows.is_empty() {
            self.done = true;
            return Ok(None);
        }
        Ok(Some(NatsBatch {
            rows,
            ack: NatsAck {
                store: self.settings.name.clone(),
                client: self.client.clone(),
                messages: acks,
            },
        }))
    }

    /// Receive up to `batch_size` rows into `rows` (and their JetStream messages into
    /// `acks`), marking the source done when a limit is reached or it runs idle.
    async fn fill(
        &mut self,
        rows: &mut Vec<IndexMap<String, Value>>,
        acks: &mut Vec<jetstream::Message>,
    ) -> Result<(), RuntimeError> {
        let mut idle = false;
        while rows.len() < self.batch_size {
            let Some((want, wait)) = self.budget() else {
                self.done = true;
                break;
            };
            let want = want.min(self.batch_size - rows.len());
            let before = rows.len();
            match &mut self.inbox {
                Inbox::Core(sub) => match tokio::time::timeout(wait, sub.next()).await {
                    Ok(Some(msg)) => {
                        let label = format!("message {} on `{}`", self.received + 1, msg.subject);
                        rows.push(self.decode(&msg.payload, &label)?);
                        self.received += 1;
                    }
                    Ok(None) | Err(_) => idle = true,
                },
                Inbox::Js(consumer) => {
                    let msgs: Vec<jetstream::Message> = if self.ready.is_empty() {
                        // Messages held past the ack wait come again: a pull ends in time.
                        let wait = if self.ack_wait.is_zero() {
                            wait
                        } else {
                            wait.min(self.ack_wait / 2)
                        };
                        pull(consumer, &self.settings, want, wait).await?
                    } else {
                        let n = want.min(self.ready.len());
                        self.ready.drain(..n).collect()
                    };
                    // A pull that ended short waited its time: write what it gave.
                    let short = msgs.len() < want;
                    let mut msgs = msgs.into_iter();
                    while let Some(msg) = msgs.next() {
                        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
                        let label = format!("stream sequence {seq} on `{}`", msg.subject);
                        let row = match self.decode(&msg.payload, &label) {
                            Ok(row) => row,
                            Err(e) => {
                                // Hand the message back, with every one after it, so that a
                                // later run gets them at once and in order (the messages
                                // after it are not written either). The pull has ended: no
                                // request of this run can take them again.
                                let back: Vec<jetstream::Message> = std::iter::once(msg)
                                    .chain(msgs)
                                    .chain(self.ready.drain(..))
                                    .collect();
                                nak_all(&self.settings.name, &self.client, &back).await;
                                return Err(e);
                            }
                        };
                        rows.push(row);
                        acks.push(msg);
                        self.received += 1;
                    }
                    if rows.len() == before {
                        idle = true;
                    } else if short {
                        break;
                    }
                }
            }
            if idle {
                self.done = true;
                break;
            }
        }
        Ok(())
    }

    fn decode(&self, payload: &[u8], label: &str) -> Result<IndexMap<String, Value>, RuntimeError> {
        // The caller names the pipeline.
        let json: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| self.settings.err(format!("{label} is not JSON: {e}")))?;
        let serde_json::Value::Object(obj) = json else {
            return Err(self.settings.err(format!("{label} is not a JSON object")));
        };
        let row =
            row_from_json(&obj, &self.fields).map_err(|(column, message)| RuntimeError::Value {
                pipeline: self.pipeline.clone(),
                key: label.to_string(),
                column,
                message,
            })?;
        // A message without its key cannot be merged: name the message, not `id=NULL`.
        if let Some(k) = self
            .key
            .iter()
            .find(|k| row.get(*k).is_none_or(Value::is_null))
        {
            return Err(RuntimeError::Value {
                pipeline: self.pipeline.clone(),
                key: label.to_string(),
                column: k.clone(),
                message: "the message has no value for this key field (missing or null)".into(),
            });
        }
        Ok(row)
    }

    /// Stop consuming: hand back the messages pulled at start and not taken (`max_msgs`
    /// reached first), unsubscribe a core subscription, drain the connection.
    pub async fn close(mut self) -> Result<(), RuntimeError> {
        let left: Vec<jetstream::Message> = self.ready.drain(..).collect();
        nak_all(&self.settings.name, &self.client, &left).await;
        if let Inbox::Core(mut sub) = self.inbox {
            let _ = sub.unsubscribe().await;
        }
        self.client
            .drain()
            .await
            .map_err(|e| self.settings.err(format!("drain: {e}")))
    }
}
