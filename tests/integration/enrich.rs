//! Enrichment, webhook and NATS against real services: Redis on 127.0.0.1:6379, NATS with
//! JetStream on 127.0.0.1:4222, and HTTP servers started by each test on 127.0.0.1.
//! A missing service fails the test.

use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use indexmap::IndexMap;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synctool::config::raw::RawConfig;
use synctool::expr::{Decimal, Value};
use synctool::ir::Pipeline;
use synctool::runtime::enrich::Enricher;
use synctool::runtime::nats::{NatsSink, NatsSource};
use synctool::runtime::webhook::WebhookSink;
use synctool::runtime::RuntimeError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REDIS: &str = "127.0.0.1:6379";
const NATS: &str = "nats://127.0.0.1:4222";

// ---------------------------------------------------------------- helpers

/// A name unique to this test run and call.
fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{tag}_{}_{nanos}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn compile(yaml: &str) -> (Pipeline, RawConfig) {
    let fe = synctool::driver::frontend("test.yaml", yaml, &HashMap::<String, String>::new(), &[])
        .unwrap_or_else(|f| panic!("config does not check:\n{}", f.render()));
    (
        fe.checked.program.pipelines[0].clone(),
        fe.loaded.raw.clone(),
    )
}

fn row(pairs: &[(&str, Value)]) -> IndexMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn s(x: &str) -> Value {
    Value::Str(x.to_string())
}

/// A JSON string value (what `json_get` on an HTTP body gives).
fn j(x: &str) -> Value {
    Value::json(serde_json::Value::String(x.to_string()))
}

async fn redis_conn() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{REDIS}/0")).unwrap();
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis must run on {REDIS} for this test: {e}"))
}

async fn nats_client() -> async_nats::Client {
    async_nats::connect(NATS)
        .await
        .unwrap_or_else(|e| panic!("NATS must run on {NATS} for this test: {e}"))
}

/// A TCP proxy in front of Redis that counts request/response exchanges: a chunk from the
/// client that follows a reply (or is the first) starts a new round trip.
struct RoundTripProxy {
    addr: SocketAddr,
    round_trips: Arc<AtomicUsize>,
}

impl RoundTripProxy {
    async fn start(upstream: &'static str) -> RoundTripProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let round_trips = Arc::new(AtomicUsize::new(0));
        let rt = round_trips.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(upstream)
                    .await
                    .unwrap_or_else(|e| panic!("Redis must run on {upstream}: {e}"));
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let replied = Arc::new(AtomicBool::new(true));
                let (rt2, replied2) = (rt.clone(), replied.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if replied2.swap(false, Ordering::SeqCst) {
                            rt2.fetch_add(1, Ordering::SeqCst);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        replied.store(true, Ordering::SeqCst);
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        RoundTripProxy { addr, round_trips }
    }

    fn take(&self) -> usize {
        self.round_trips.swap(0, Ordering::SeqCst)
    }
}

/// One request as a test HTTP server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query.
    uri: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    /// When it arrived.
    at: Instant,
}

/// What the server answers.
struct Reply {
    status: u16,
    body: String,
    delay: Duration,
    /// A `Location` header.
    location: Option<String>,
    /// More headers.
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn ok(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
            location: None,
            headers: Vec::new(),
        }
    }
    fn status(status: u16) -> Reply {
        Reply {
            status,
            body: String::new(),
            delay: Duration::ZERO,
            location: None,
            headers: Vec::new(),
        }
    }
    /// A redirect to `to`.
    fn redirect(status: u16, to: &str) -> Reply {
        Reply {
            location: Some(to.to_string()),
            ..Reply::status(status)
        }
    }
    fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

type Responder = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A real HTTP/1.1 server on 127.0.0.1 that records requests, counts requests per URI and
/// tracks the largest number of requests in flight at once.
struct TestServer {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    max_in_flight: Arc<AtomicUsize>,
}

impl TestServer {
    /// `respond(request, n)` where `n` is how many requests for the same URI came before.
    async fn start(respond: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let respond: Arc<Responder> = Arc::new(respond);
        let (seen2, max2) = (seen.clone(), max_in_flight.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, in_flight, max, respond) = (
                    seen2.clone(),
                    in_flight.clone(),
                    max2.clone(),
                    respond.clone(),
                );
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (seen, in_flight, max, respond) = (
                        seen.clone(),
                        in_flight.clone(),
                        max.clone(),
                        respond.clone(),
                    );
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        let at = Instant::now();
                        let method = req.method().to_string();
                        let uri = req.uri().to_string();
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                            })
                            .collect();
                        use http_body_util::BodyExt;
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().to_vec())
                            .unwrap_or_default();
                        let s = Seen {
                            method,
                            uri,
                            headers,
                            body,
                            at,
                        };
                        let n = {
                            let mut all = seen.lock().unwrap();
                            let n = all.iter().filter(|x| x.uri == s.uri).count();
                            all.push(s.clone());
                            n
                        };
                        let reply = respond(&s, n);
                        tokio::time::sleep(reply.delay).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        let mut resp = Response::builder()
                            .status(reply.status)
                            .header("content-type", "application/json");
                        if let Some(l) = &reply.location {
                            resp = resp.header("location", l);
                        }
                        for (k, v) in &reply.headers {
                            resp = resp.header(*k, v);
                        }
                        let resp = resp
                            .body(http_body_util::Full::new(Bytes::from(reply.body)))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestServer {
            base: format!("http://{addr}"),
            seen,
            max_in_flight,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, uri: &str) -> usize {
        self.seen().iter().filter(|s| s.uri == uri).count()
    }
}

// ---------------------------------------------------------------- Redis

fn redis_config(host: &str, port: u16, prefix: &str, enrichment_extra: &str) -> String {
    format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}}
externalstores:
  - {{name: cache, type: redis, host: "{host}", port: {port}, db: 0, timeout: 2, retries: 0}}
pipelines:
  - name: redis_enrich
    source:
      datastore: pg
      table: customers
      fields:
        - {{column: id, dtype: int}}
        - {{column: code, dtype: str}}
    sink:
      datastore: pg
      table: out
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: segment, dtype: str, source: segment}}
    enrichment:
      - externalstore: cache
        name: segment
        type: redis
        key_template: "{prefix}{{{{ code }}}}"
{enrichment_extra}
"#
    )
}

async fn set_keys(prefix: &str, pairs: &[(&str, &str)]) {
    let mut c = redis_conn().await;
    for (k, v) in pairs {
        redis::cmd("SET")
            .arg(format!("{prefix}{k}"))
            .arg(*v)
            .query_async::<()>(&mut c)
            .await
            .unwrap();
    }
}

async fn del_keys(prefix: &str, keys: &[&str]) {
    let mut c = redis_conn().await;
    for k in keys {
        redis::cmd("DEL")
            .arg(format!("{prefix}{k}"))
            .query_async::<()>(&mut c)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn redis_lookups_take_one_round_trip_per_batch_and_missing_keys_are_null() {
    let prefix = format!("{}:", unique("synctool_test_seg"));
    set_keys(&prefix, &[("a", "gold"), ("b", "silver"), ("c", "bronze")]).await;
    let proxy = RoundTripProxy::start(REDIS).await;
    let (p, cfg) = compile(&redis_config(
        "127.0.0.1",
        proxy.addr.port(),
        &prefix,
        "        on_error: fail",
    ));
    let enricher = Enricher::connect(&p, &cfg).await.unwrap();
    proxy.take(); // the connection handshake does not count

    // Batch 1: 6 rows, 4 distinct keys (one missing).
    let codes = ["a", "b", "a", "zz_missing", "c", "b"];
    let mut rows: Vec<_> = codes
        .iter()
        .enumerate()
        .map(|(i, c)| row(&[("id", Value::Int(i as i64)), ("code", s(c))]))
        .collect();
    let report = enricher.run(&mut rows).await.unwrap();
    assert_eq!(proxy.take(), 1, "one round trip for the whole batch");
    assert_eq!(report.stats[0].lookups, 4, "distinct keys only");
    let got: Vec<Value> = rows.iter().map(|r| r["segment"].clone()).collect();
    assert_eq!(
        got,
        vec![
            s("gold"),
            s("silver"),
            s("gold"),
            Value::Null,
            s("bronze"),
            s("silver")
        ]
    );

    // Batch 2 of 50 rows: still one round trip.
    let mut rows: Vec<_> = (0..50)
        .map(|i| {
            row(&[
                ("id", Value::Int(i)),
                ("code", s(["a", "b", "c"][i as usize % 3])),
            ])
        })
        .collect();
    enricher.run(&mut rows).await.unwrap();
    assert_eq!(proxy.take(), 1);
    assert_eq!(rows[49]["segment"], s("silver")); // 49 % 3 == 1 → "b"

    // The sink row picks the enrichment output.
    let out = synctool::runtime::transform::sink_row(&p, &rows[1], chrono::Utc::now().naive_utc())
        .unwrap();
    assert_eq!(out, vec![Value::Int(1), s("silver")]);
    del_keys(&prefix, &["a", "b", "c"]).await;
}

#[tokio::test]
async fn redis_on_error_policies() {
    let prefix = format!("{}:", unique("synctool_test_pol"));
    set_keys(&prefix, &[("a", "10"), ("b", "not-a-number")]).await;
    let batch = || {
        vec![
            row(&[("id", Value::Int(1)), ("code", s("a"))]),
            row(&[("id", Value::Int(2)), ("code", s("b"))]),
            row(&[("id", Value::Int(3)), ("code", Value::Null)]),
            row(&[("id", Value::Int(4)), ("code", s("a"))]),
        ]
    };
    let output = r#"        output: 'lambda v: {"score": int(v)}'"#;

    // fail: the error names the enrichment, the store and the row key.
    let (p, cfg) = compile(&redis_config(
        "127.0.0.1",
        6379,
        &prefix,
        &format!("{output}\n        on_error: fail"),
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let err = e.run(&mut batch()).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Enrichment { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("enrichment `segment`"), "{msg}");
    assert!(msg.contains("store `cache`"), "{msg}");
    assert!(msg.contains("id=2"), "{msg}");

    // null: outputs are NULL, every row kept.
    let (p, cfg) = compile(&redis_config(
        "127.0.0.1",
        6379,
        &prefix,
        &format!("{output}\n        on_error: \"null\""),
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = batch();
    let report = e.run(&mut rows).await.unwrap();
    assert_eq!(report.kept, vec![true; 4]);
    let scores: Vec<Value> = rows.iter().map(|r| r["score"].clone()).collect();
    assert_eq!(
        scores,
        vec![Value::Int(10), Value::Null, Value::Null, Value::Int(10)]
    );

    // skip: failing rows (bad value, NULL key field) are dropped.
    let (p, cfg) = compile(&redis_config(
        "127.0.0.1",
        6379,
        &prefix,
        &format!("{output}\n        on_error: skip"),
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = batch();
    let report = e.run(&mut rows).await.unwrap();
    assert_eq!(report.kept, vec![true, false, false, true]);
    assert_eq!(
        rows.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(),
        vec![Value::Int(1), Value::Int(4)]
    );
    assert_eq!(report.skipped.len(), 2);
    assert_eq!(report.skipped[0].key, "id=2");
    assert!(
        report.skipped[1].reason.contains("NULL"),
        "{:?}",
        report.skipped[1]
    );
    del_keys(&prefix, &["a", "b"]).await;
}

#[tokio::test]
async fn redis_unreachable_or_bad_password_fails_at_connect_without_the_secret() {
    // Nothing listens on this port: the connect error names store and host.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (p, cfg) = compile(&redis_config("127.0.0.1", port, "x:", ""));
    let err = Enricher::connect(&p, &cfg).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::ExternalConnect { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("external store `cache` (127.0.0.1:{port})")),
        "{err}"
    );

    // With retries, the reconnection waits grow from 1 s, at most 5 s each: the run fails
    // instead of waiting minutes (the redis crate's default factor made the second wait
    // 60 s).
    let (p, cfg) =
        compile(&redis_config("127.0.0.1", port, "x:", "").replace("retries: 0", "retries: 3"));
    let connect = Enricher::connect(&p, &cfg);
    let err = tokio::time::timeout(std::time::Duration::from_secs(40), connect)
        .await
        .expect("an unreachable Redis must fail, not hang")
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::ExternalConnect { .. }),
        "{err:?}"
    );

    // A wrong password against the real server: refused, and the password is not shown.
    let yaml = redis_config("127.0.0.1", 6379, "x:", "")
        .replace("db: 0,", "db: 0, password: Sup3rSecretPw,");
    let (p, cfg) = compile(&yaml);
    let err = Enricher::connect(&p, &cfg).await.unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains("Sup3rSecretPw"), "{msg}");
}

/// A key holding another type (a hash) makes Redis refuse its `GET`, which fails the whole
/// pipeline: only that row may be affected, under every policy.
#[tokio::test]
async fn redis_a_key_of_the_wrong_type_affects_only_its_row() {
    let prefix = format!("{}:", unique("synctool_test_wrongtype"));
    let codes: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    let values: Vec<(String, String)> = codes
        .iter()
        .filter(|c| *c != "5")
        .map(|c| (c.clone(), format!("v{c}")))
        .collect();
    let pairs: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    set_keys(&prefix, &pairs).await;
    let mut c = redis_conn().await;
    redis::cmd("HSET")
        .arg(format!("{prefix}5"))
        .arg("f")
        .arg("v")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    let batch = || -> Vec<IndexMap<String, Value>> {
        codes
            .iter()
            .map(|c| row(&[("id", Value::Int(c.parse().unwrap())), ("code", s(c))]))
            .collect()
    };

    // fail: the error names row 5.
    let (p, cfg) = compile(&redis_config(
        "127.0.0.1",
        6379,
        &prefix,
        "        on_error: fail",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let err = e.run(&mut batch()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("row with key (id=5)"), "{msg}");
    assert!(msg.contains("WRONGTYPE"), "{msg}");
    assert!(msg.contains(&format!("key `{prefix}5`")), "{msg}");

    // null: only row 5 is NULL.
    let (p, cfg) = compile(&redis_config(
        "127.0.0.1",
        6379,
        &prefix,
        "        on_error: \"null\"",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = batch();
    let report = e.run(&mut rows).await.unwrap();
    assert_eq!(report.stats[0].failed_rows, 1);
    for r in &rows {
        let want = match &r["id"] {
            Value::Int(5) => Value::Null,
            Value::Int(i) => s(&format!("v{i}")),
            other => panic!("{other:?}"),
        };
        assert_eq!(r["segment"], want, "{r:?}");
    }
    assert_eq!(e.tally().nulled, 1);
    assert_eq!(e.tally().first.unwrap().key, "id=5");

    // skip: only row 5 is dropped.
    let (p, cfg) = compile(&redis_config(
        "127.0.0.1",
        6379,
        &prefix,
        "        on_error: skip",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = batch();
    let report = e.run(&mut rows).await.unwrap();
    assert_eq!(rows.len(), 19);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].key, "id=5");
    assert!(
        report.skipped[0].reason.contains("WRONGTYPE"),
        "{:?}",
        report.skipped
    );
    assert!(rows.iter().all(|r| r["id"] != Value::Int(5)));

    let mut all: Vec<&str> = codes.iter().map(String::as_str).collect();
    all.push("5");
    del_keys(&prefix, &all).await;
}

/// `password: "${VAR:-}"` with the variable unset (and the same for `username`) means no
/// password: no `AUTH` is sent to a server that has none.
#[tokio::test]
async fn redis_empty_credentials_mean_none() {
    let prefix = format!("{}:", unique("synctool_test_nopw"));
    set_keys(&prefix, &[("a", "gold")]).await;
    let yaml = redis_config("127.0.0.1", 6379, &prefix, "").replace(
        "db: 0,",
        r#"db: 0, username: "${SYNCTOOL_TEST_UNSET_USER:-}", password: "${SYNCTOOL_TEST_UNSET_PW:-}","#,
    );
    let (p, cfg) = compile(&yaml);
    let e = Enricher::connect(&p, &cfg)
        .await
        .unwrap_or_else(|e| panic!("an empty password must mean none: {e}"));
    let mut rows = vec![row(&[("id", Value::Int(1)), ("code", s("a"))])];
    e.run(&mut rows).await.unwrap();
    assert_eq!(rows[0]["segment"], s("gold"));
    del_keys(&prefix, &["a"]).await;
}

// ---------------------------------------------------------------- HTTP

fn http_config(base: &str, store_extra: &str, enrichment_extra: &str) -> String {
    format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}}
externalstores:
  - name: geo
    type: http
    url: "{base}/api"
    headers:
      Authorization: "Bearer t0ken-value"
{store_extra}
pipelines:
  - name: http_enrich
    source:
      datastore: pg
      table: customers
      fields:
        - {{column: id, dtype: int}}
        - {{column: zip, dtype: str}}
    sink:
      datastore: pg
      table: out
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: city, dtype: str, source: geo, source_column: city}}
    enrichment:
      - externalstore: geo
        name: geo
        type: http
        path: "TMPL(/zip/{{{{ zip }}}})"
        params:
          country: "TMPL(de & at)"
        output: 'lambda v: {{"city": json_get(v, "city")}}'
{enrichment_extra}
"#
    )
}

fn zip_rows(zips: &[&str]) -> Vec<IndexMap<String, Value>> {
    zips.iter()
        .enumerate()
        .map(|(i, z)| row(&[("id", Value::Int(i as i64 + 1)), ("zip", s(z))]))
        .collect()
}

fn city_of(uri: &str) -> String {
    let zip = uri
        .trim_start_matches("/api/zip/")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    format!(r#"{{"city": "city-{zip}"}}"#)
}

#[tokio::test]
async fn http_identical_requests_are_sent_once_per_batch() {
    let server = TestServer::start(|seen, _| Reply::ok(city_of(&seen.uri))).await;
    let (p, cfg) = compile(&http_config(&server.base, "", ""));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = zip_rows(&["10115", "80331", "10115", "10115", "80331", "10115"]);
    e.run(&mut rows).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(server.count("/api/zip/10115?country=de+%26+at"), 1);
    assert_eq!(server.count("/api/zip/80331?country=de+%26+at"), 1);
    assert!(seen.iter().all(|s| s.method == "GET"));
    assert!(seen
        .iter()
        .all(|s| s.headers.get("authorization").map(String::as_str) == Some("Bearer t0ken-value")));
    let cities: Vec<Value> = rows.iter().map(|r| r["city"].clone()).collect();
    assert_eq!(cities[0], j("city-10115"));
    assert_eq!(cities[1], j("city-80331"));
    assert_eq!(cities[5], j("city-10115"));
    // The sink row coerces the JSON output to the sink dtype (str).
    let out = synctool::runtime::transform::sink_row(&p, &rows[0], chrono::Utc::now().naive_utc())
        .unwrap();
    assert_eq!(out, vec![Value::Int(1), s("city-10115")]);
}

#[tokio::test]
async fn http_concurrency_is_bounded() {
    let server = TestServer::start(|seen, _| {
        Reply::ok(city_of(&seen.uri)).after(Duration::from_millis(150))
    })
    .await;
    let (p, cfg) = compile(&http_config(&server.base, "    max_concurrency: 3", ""));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let zips: Vec<String> = (0..12).map(|i| format!("z{i}")).collect();
    let refs: Vec<&str> = zips.iter().map(String::as_str).collect();
    let mut rows = zip_rows(&refs);
    let t = Instant::now();
    e.run(&mut rows).await.unwrap();
    assert_eq!(server.seen().len(), 12);
    assert_eq!(server.max_in_flight.load(Ordering::SeqCst), 3);
    // 12 requests of 150 ms, 3 at a time: at least 4 waves.
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(rows[11]["city"], j("city-z11"));
}

#[tokio::test]
async fn http_retries_5xx_then_succeeds_but_never_retries_404() {
    let server = TestServer::start(|seen, n| {
        if seen.uri.starts_with("/api/zip/flaky") && n < 2 {
            Reply::status(503)
        } else if seen.uri.starts_with("/api/zip/gone") {
            Reply::status(404)
        } else {
            Reply::ok(city_of(&seen.uri))
        }
    })
    .await;
    let (p, cfg) = compile(&http_config(
        &server.base,
        "    retries: 3",
        "        on_error: fail",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = zip_rows(&["flaky"]);
    e.run(&mut rows).await.unwrap();
    assert_eq!(server.count("/api/zip/flaky?country=de+%26+at"), 3);
    assert_eq!(rows[0]["city"], j("city-flaky"));

    let mut rows = zip_rows(&["ok", "gone"]);
    let err = e.run(&mut rows).await.unwrap_err();
    assert_eq!(
        server.count("/api/zip/gone?country=de+%26+at"),
        1,
        "404 is final"
    );
    let msg = err.to_string();
    assert!(msg.contains("404"), "{msg}");
    assert!(msg.contains("id=2"), "{msg}");
    assert!(msg.contains("enrichment `geo`"), "{msg}");
    assert!(
        !msg.contains("country="),
        "query strings stay out of errors: {msg}"
    );
    assert!(!msg.contains("t0ken-value"), "{msg}");

    // The same 404 under on_error: skip drops only that row.
    let (p, cfg) = compile(&http_config(
        &server.base,
        "    retries: 3",
        "        on_error: skip",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = zip_rows(&["ok", "gone"]);
    let report = e.run(&mut rows).await.unwrap();
    assert_eq!(report.kept, vec![true, false]);
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn http_timeouts_are_retried_then_fail() {
    let server =
        TestServer::start(|seen, _| Reply::ok(city_of(&seen.uri)).after(Duration::from_secs(3)))
            .await;
    let (p, cfg) = compile(&http_config(
        &server.base,
        "    timeout: 0.3\n    retries: 1",
        "        on_error: fail",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let t = Instant::now();
    let err = e.run(&mut zip_rows(&["slow"])).await.unwrap_err();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(server.count("/api/zip/slow?country=de+%26+at"), 2);
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn http_templates_see_outputs_of_earlier_enrichments() {
    let prefix = format!("{}:", unique("synctool_test_chain"));
    set_keys(&prefix, &[("1", "10115")]).await;
    let server = TestServer::start(|seen, _| Reply::ok(city_of(&seen.uri))).await;
    let yaml = format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}}
externalstores:
  - {{name: cache, type: redis, host: 127.0.0.1, port: 6379}}
  - {{name: geo, type: http, url: "{base}/api"}}
pipelines:
  - name: chain
    source:
      datastore: pg
      table: customers
      fields:
        - {{column: id, dtype: int}}
    sink:
      datastore: pg
      table: out
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: city, dtype: str, source: geo, source_column: city}}
    enrichment:
      - {{externalstore: cache, name: zip, key_template: "{prefix}{{{{ id }}}}"}}
      - externalstore: geo
        name: geo
        path: "TMPL(/zip/{{{{ zip }}}})"
        output: 'lambda v: {{"city": json_get(v, "city")}}'
"#,
        base = server.base
    );
    let (p, cfg) = compile(&yaml);
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = vec![row(&[("id", Value::Int(1))])];
    e.run(&mut rows).await.unwrap();
    assert_eq!(rows[0]["zip"], s("10115"));
    assert_eq!(rows[0]["city"], j("city-10115"));
    assert_eq!(server.count("/api/zip/10115"), 1);
    del_keys(&prefix, &["1"]).await;
}

/// The store URL's query string (an API key) stays the query string: the lookup's path goes
/// into the URL's path, and its params after the store's query.
#[tokio::test]
async fn http_store_url_with_a_query_string_keeps_it() {
    let server = TestServer::start(|_, _| Reply::ok(r#"{"city": "c"}"#)).await;
    let yaml = http_config(&server.base, "", "").replace(
        &format!("url: \"{}/api\"", server.base),
        &format!("url: \"{}/base?api_key=K1\"", server.base),
    );
    let (p, cfg) = compile(&yaml);
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = zip_rows(&["10115"]);
    e.run(&mut rows).await.unwrap();
    let uris: Vec<String> = server.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(uris, vec!["/base/zip/10115?api_key=K1&country=de+%26+at"]);
    assert_eq!(rows[0]["city"], j("c"));
}

/// Row values are percent-encoded into the path: one value is one path segment, whatever
/// it holds, and it can never send the request (with the store's headers) to another host.
#[tokio::test]
async fn http_path_values_are_encoded_and_never_change_the_host() {
    let server = TestServer::start(|_, _| Reply::ok(r#"{"city": "c"}"#)).await;
    let other = TestServer::start(|_, _| Reply::ok(r#"{"city": "stolen"}"#)).await;

    // One value, one segment; the query parameter is a query value.
    let (p, cfg) = compile(&http_config(&server.base, "", "        on_error: fail"));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    e.run(&mut zip_rows(&["a b/c?d&e=f#g"])).await.unwrap();
    assert_eq!(
        server.count("/api/zip/a%20b%2Fc%3Fd%26e%3Df%23g?country=de+%26+at"),
        1,
        "{:#?}",
        server.seen()
    );

    // A value that is a whole URL stays a segment of the store's own path.
    let steal = format!("{}/steal", other.base);
    let yaml = http_config(&server.base, "", "        on_error: fail")
        .replace("TMPL(/zip/{{ zip }})", "TMPL({{ zip }})");
    let (p, cfg) = compile(&yaml);
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    e.run(&mut zip_rows(&[&steal])).await.unwrap();
    assert!(other.seen().is_empty(), "{:#?}", other.seen());
    let port = other.base.rsplit(':').next().unwrap();
    assert_eq!(
        server.count(&format!(
            "/api/http%3A%2F%2F127.0.0.1%3A{port}%2Fsteal?country=de+%26+at"
        )),
        1,
        "{:#?}",
        server.seen()
    );

    // A value that would climb the path is refused, not resolved.
    let before = server.seen().len();
    let err = e.run(&mut zip_rows(&[".."])).await.unwrap_err();
    assert!(err.to_string().contains("`..` segment"), "{err}");
    assert_eq!(server.seen().len(), before);

    // A whole URL written in the template must be on the store's host: another host is an
    // error for the row, and nothing is sent there.
    let yaml = http_config(&server.base, "", "        on_error: skip").replace(
        "TMPL(/zip/{{ zip }})",
        &format!("TMPL({}/x/{{{{ zip }}}})", other.base),
    );
    let (p, cfg) = compile(&yaml);
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = zip_rows(&["1"]);
    let report = e.run(&mut rows).await.unwrap();
    assert!(rows.is_empty());
    assert!(
        report.skipped[0].reason.contains("not on the store's"),
        "{:?}",
        report.skipped
    );
    assert!(other.seen().is_empty(), "{:#?}", other.seen());
    // On the store's own host it is used as written.
    let yaml = http_config(&server.base, "", "        on_error: fail").replace(
        "TMPL(/zip/{{ zip }})",
        &format!("TMPL({}/abs/{{{{ zip }}}})", server.base),
    );
    let (p, cfg) = compile(&yaml);
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    e.run(&mut zip_rows(&["7 7"])).await.unwrap();
    assert_eq!(server.count("/abs/7%207?country=de+%26+at"), 1);
}

/// Under `on_error: fail`, the first lookup that fails for good stops the batch: the other
/// lookups are cancelled or never sent, instead of each being tried with all its retries.
#[tokio::test]
async fn http_on_error_fail_stops_the_batch_at_the_first_failure() {
    let server = TestServer::start(|_, _| Reply::status(503)).await;
    let zips: Vec<String> = (0..40).map(|i| format!("z{i}")).collect();
    let refs: Vec<&str> = zips.iter().map(String::as_str).collect();
    let (p, cfg) = compile(&http_config(
        &server.base,
        "    retries: 2\n    max_concurrency: 2",
        "        on_error: fail",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let err = e.run(&mut zip_rows(&refs)).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("503"), "{msg}");
    assert!(
        msg.contains("(id=1)") || msg.contains("(id=2)"),
        "the failed lookup's row: {msg}"
    );
    // At most the two lookups in flight, three attempts each.
    let sent = server.seen().len();
    assert!(sent <= 6, "{sent} requests");

    // A row whose request cannot be rendered stops the run: the rows after it are not
    // looked up.
    let before = server.seen().len();
    let mut rows = zip_rows(&["a", "b", "c"]);
    rows[0].insert("zip".into(), Value::Null);
    let err = e.run(&mut rows).await.unwrap_err();
    assert!(err.to_string().contains("(id=1)"), "{err}");
    assert!(err.to_string().contains("NULL"), "{err}");
    assert_eq!(server.seen().len(), before);

    // `null` still asks for every row.
    let (p, cfg) = compile(&http_config(
        &server.base,
        "    retries: 0\n    max_concurrency: 4",
        "        on_error: \"null\"",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let before = server.seen().len();
    let mut rows = zip_rows(&refs);
    e.run(&mut rows).await.unwrap();
    assert_eq!(server.seen().len() - before, 40);
    assert!(rows.iter().all(|r| r["city"] == Value::Null));
    let tally = e.tally();
    assert_eq!((tally.nulled, tally.skipped), (40, 0));
    assert_eq!(tally.first.unwrap().key, "id=1");
}

/// Rows that `on_error: skip` drops are reported once per run as a warning (at the default
/// log level), and the JSON report keeps its shape.
#[tokio::test(flavor = "multi_thread")]
async fn on_error_skipped_rows_are_reported_once_per_run() {
    let server = TestServer::start(|_, _| Reply::status(404)).await;
    let c = crate::support::pg().await;
    let src = unique("skip_src");
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, zip text);
         INSERT INTO {src} SELECT i, 'z' || i FROM generate_series(1, 30) i;"
    ))
    .await
    .unwrap();
    let yaml = format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: postgres, database: test}}
externalstores:
  - {{name: geo, type: http, url: "{base}/api", retries: 0}}
pipelines:
  - name: skipping
    source:
      datastore: pg
      batch_size: 10
      table: {src}
      fields: [{{column: id, dtype: int}}, {{column: zip, dtype: str}}]
    sink:
      datastore: pg
      table: {src}_out
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: city, dtype: str, source: geo, source_column: city}}
    enrichment:
      - externalstore: geo
        name: geo
        path: "TMPL(/zip/{{{{ zip }}}})"
        output: 'lambda v: {{"city": json_get(v, "city")}}'
        on_error: skip
"#,
        base = server.base
    );
    let path = std::env::temp_dir().join(format!("{src}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_synctool"))
        .arg("-c")
        .arg(&path)
        .args(["apply", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning for the run: {stderr}");
    assert!(warnings[0].contains("30 rows skipped"), "{stderr}");
    assert!(warnings[0].contains("row with key (id=1)"), "{stderr}");
    assert!(warnings[0].contains("404"), "{stderr}");
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let report = &out["pipelines"][0];
    let mut keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "blocks",
            "duration_ms",
            "mode",
            "name",
            "rows_deleted",
            "rows_read",
            "rows_written"
        ]
    );
    assert_eq!(report["rows_read"], 30);
    assert_eq!(report["rows_written"], 0);
    c.batch_execute(&format!("DROP TABLE {src}; DROP TABLE IF EXISTS {src}_out"))
        .await
        .unwrap();
}

// ---------------------------------------------------------------- webhook

/// `apply` into a webhook posts `sink.batch_size` rows per request, whatever the source's
/// batches are.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_posts_follow_the_sink_batch_size() {
    let server = TestServer::start(|_, _| Reply::status(204)).await;
    let c = crate::support::pg().await;
    let src = unique("hook_src");
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY); INSERT INTO {src} SELECT generate_series(1, 250);"
    ))
    .await
    .unwrap();
    let yaml = format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: postgres, database: test}}
  - {{name: hooks, type: webhook, base_url: "{base}/"}}
pipelines:
  - name: to_hook
    source:
      datastore: pg
      batch_size: 1000
      table: {src}
      fields: [{{column: id, dtype: int}}]
    sink:
      datastore: hooks
      batch_size: 100
      url_path: /v1/rows
      fields: [{{column: id, source_column: id}}]
"#,
        base = server.base
    );
    let path = std::env::temp_dir().join(format!("{src}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_synctool"))
        .arg("-c")
        .arg(&path)
        .arg("apply")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let sizes: Vec<usize> = server
        .seen()
        .iter()
        .map(|s| {
            serde_json::from_slice::<Vec<serde_json::Value>>(&s.body)
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    c.batch_execute(&format!("DROP TABLE {src}")).await.unwrap();
}

fn webhook_config(base: &str) -> String {
    format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}}
  - name: hooks
    type: webhook
    base_url: "{base}/"
    headers:
      X-Api-Key: k3y-value
    timeout: 2
    retries: 3
pipelines:
  - name: to_hook
    source:
      datastore: pg
      table: t
      fields:
        - {{column: id, dtype: int}}
        - {{column: amount, dtype: "decimal(20,4)"}}
        - {{column: at, dtype: datetime}}
        - {{column: day, dtype: date}}
        - {{column: uid, dtype: uuid}}
        - {{column: note, dtype: str}}
    sink:
      datastore: hooks
      url_path: /v1/rows
      fields:
        - {{column: id, source_column: id}}
        - {{column: amount, source_column: amount}}
        - {{column: at, source_column: at}}
        - {{column: day, source_column: day}}
        - {{column: uid, source_column: uid}}
        - {{column: note, source_column: note}}
"#
    )
}

fn webhook_rows(n: i64) -> Vec<synctool::runtime::Row> {
    (1..=n)
        .map(|i| {
            vec![
                Value::Int(i),
                Value::Decimal(Decimal::parse("12345678901234.0001").unwrap()),
                Value::Datetime(
                    chrono::NaiveDate::from_ymd_opt(2024, 1, 2)
                        .unwrap()
                        .and_hms_micro_opt(3, 4, 5, 6)
                        .unwrap(),
                ),
                Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()),
                Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
                if i == 1 { Value::Null } else { s("hi") },
            ]
        })
        .collect()
}

#[tokio::test]
async fn webhook_posts_json_batches_with_a_stable_idempotency_key() {
    let server = TestServer::start(|_, _| Reply::status(204)).await;
    let (p, cfg) = compile(&webhook_config(&server.base));
    let sink = WebhookSink::new(&p, &cfg).unwrap();
    let batch = webhook_rows(2);
    let r1 = sink.send_batch(&batch).await.unwrap();
    let r2 = sink.send_batch(&batch).await.unwrap();
    let r3 = sink.send_batch(&webhook_rows(3)).await.unwrap();
    assert_eq!(r1.status, 204);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|s| s.method == "POST" && s.uri == "/v1/rows"));
    assert!(seen
        .iter()
        .all(|s| s.headers.get("x-api-key").map(String::as_str) == Some("k3y-value")));
    assert_eq!(
        seen[0].headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let keys: Vec<&str> = seen
        .iter()
        .map(|s| s.headers["idempotency-key"].as_str())
        .collect();
    assert_eq!(keys[0], keys[1], "a re-sent batch carries the same key");
    assert_ne!(keys[0], keys[2]);
    assert_eq!(keys[0], r1.idempotency_key);
    assert_eq!(r1.idempotency_key, r2.idempotency_key);
    assert_ne!(r1.idempotency_key, r3.idempotency_key);
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!([
            {"id": 1, "amount": "12345678901234.0001", "at": "2024-01-02T03:04:05.000006Z",
             "day": "2024-01-02", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "note": null},
            {"id": 2, "amount": "12345678901234.0001", "at": "2024-01-02T03:04:05.000006Z",
             "day": "2024-01-02", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "note": "hi"}
        ])
    );
    // A new sink (a re-run) derives the same key for the same batch.
    let again = WebhookSink::new(&p, &cfg).unwrap();
    assert_eq!(
        again.send_batch(&batch).await.unwrap().idempotency_key,
        r1.idempotency_key
    );
}

#[tokio::test]
async fn webhook_retries_5xx_with_the_same_key_and_fails_on_4xx() {
    let server = TestServer::start(|seen, n| {
        let note = String::from_utf8_lossy(&seen.body).contains("\"id\":3");
        if note {
            Reply::status(422)
        } else if n < 2 {
            Reply::status(502)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let (p, cfg) = compile(&webhook_config(&server.base));
    let sink = WebhookSink::new(&p, &cfg).unwrap();
    let receipt = sink.send_batch(&webhook_rows(2)).await.unwrap();
    assert_eq!(receipt.attempts, 3);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|s| s.headers["idempotency-key"] == receipt.idempotency_key));

    let err = sink.send_batch(&webhook_rows(3)).await.unwrap_err();
    assert_eq!(server.seen().len(), 4, "4xx is not retried");
    let msg = err.to_string();
    assert!(msg.contains("422"), "{msg}");
    assert!(!msg.contains("k3y-value"), "{msg}");
}

/// A redirect is an error, not followed: following it would carry the store's headers to
/// another host, and a POST answered by a 301/302/303 would be re-sent as a GET without
/// its rows while the batch counted as written.
#[tokio::test]
async fn webhook_and_lookup_redirects_are_errors_and_not_followed() {
    let elsewhere = TestServer::start(|_, _| Reply::ok("{\"city\": \"x\"}")).await;
    let to = format!("{}/evil?token=t", elsewhere.base);
    for status in [301, 302, 307, 308] {
        let to2 = to.clone();
        let server = TestServer::start(move |_, _| Reply::redirect(status, &to2)).await;
        let (p, cfg) = compile(&webhook_config(&server.base));
        let sink = WebhookSink::new(&p, &cfg).unwrap();
        let msg = sink
            .send_batch(&webhook_rows(2))
            .await
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&format!("HTTP {status}")), "{msg}");
        assert!(
            msg.contains(&format!("to {}/evil", elsewhere.base)) && !msg.contains("token=t"),
            "{msg}"
        );
        assert_eq!(server.seen().len(), 1, "a redirect is not retried");

        let (p, cfg) = compile(&http_config(&server.base, "", ""));
        let e = Enricher::connect(&p, &cfg).await.unwrap();
        let mut rows = zip_rows(&["10115"]);
        let msg = e.run(&mut rows).await.unwrap_err().to_string();
        assert!(msg.contains(&format!("HTTP {status}")), "{msg}");
    }
    assert!(elsewhere.seen().is_empty(), "{:#?}", elsewhere.seen());
}

/// A `base_url` with a query string (a token) keeps it: `url_path` goes into the path.
#[tokio::test]
async fn webhook_base_url_with_a_query_string_keeps_it() {
    let server = TestServer::start(|_, _| Reply::status(204)).await;
    let yaml = webhook_config(&server.base).replace(
        &format!("base_url: \"{}/\"", server.base),
        &format!("base_url: \"{}/api?token=T\"", server.base),
    );
    let (p, cfg) = compile(&yaml);
    let sink = WebhookSink::new(&p, &cfg).unwrap();
    sink.send_batch(&webhook_rows(1)).await.unwrap();
    let uris: Vec<String> = server.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(uris, vec!["/api/v1/rows?token=T"]);
}

// ---------------------------------------------------------------- NATS

fn nats_sink_config(subject: &str, stream: Option<&str>) -> String {
    let stream = stream.map_or(String::new(), |s| format!("    stream: {s}\n"));
    format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}}
  - name: bus
    type: nats
    servers: ["{NATS}"]
    subject: unused.default
{stream}
pipelines:
  - name: to_bus
    source:
      datastore: pg
      table: t
      fields:
        - {{column: id, dtype: int}}
        - {{column: at, dtype: datetime}}
    sink:
      datastore: bus
      subject: {subject}
      fields:
        - {{column: id, source_column: id}}
        - {{column: at, source_column: at}}
"#
    )
}

fn bus_rows(n: i64) -> Vec<synctool::runtime::Row> {
    (1..=n)
        .map(|i| {
            vec![
                Value::Int(i),
                Value::Datetime(
                    chrono::NaiveDate::from_ymd_opt(2024, 5, 6)
                        .unwrap()
                        .and_hms_opt(7, 8, 9)
                        .unwrap(),
                ),
            ]
        })
        .collect()
}

#[tokio::test]
async fn nats_core_publish_reaches_a_subscriber() {
    use futures_util::StreamExt;
    let subject = format!("synctool.test.{}", unique("core"));
    let nc = nats_client().await;
    let mut sub = nc.subscribe(subject.clone()).await.unwrap();
    nc.flush().await.unwrap();
    let (p, cfg) = compile(&nats_sink_config(&subject, None));
    let sink = NatsSink::connect(&p, &cfg).await.unwrap();
    assert_eq!(sink.subject(), subject);
    let report = sink.publish_batch(&bus_rows(3)).await.unwrap();
    assert_eq!(report.published, 3);
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("message within 5 s")
            .unwrap();
        got.push(serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap());
    }
    assert_eq!(
        got[0],
        serde_json::json!({"id": 1, "at": "2024-05-06T07:08:09.000000Z"})
    );
    assert_eq!(got[2]["id"], 3);
}

async fn create_stream(js: &async_nats::jetstream::Context, name: &str, subject: &str) {
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("JetStream must be enabled on {NATS}: {e}"));
}

#[tokio::test]
async fn nats_jetstream_publish_is_acked_and_a_rerun_is_deduplicated_by_the_stream() {
    let name = unique("SYNCTOOL_SINK");
    let subject = format!("synctool.test.{name}");
    let nc = nats_client().await;
    let js = async_nats::jetstream::new(nc.clone());
    create_stream(&js, &name, &subject).await;

    // Without a unique_key a row is its content.
    let (p, cfg) = compile(&nats_sink_config(&subject, Some(&name)));
    let sink = NatsSink::connect(&p, &cfg).await.unwrap();
    let rows = bus_rows(300); // more than the in-flight bound
    let first = sink.publish_batch(&rows).await.unwrap();
    assert_eq!(first.published, 300);
    assert_eq!(first.duplicates, 0);
    let mut stream = js.get_stream(&name).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 300);
    let msg = stream.get_raw_message(1).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&msg.payload).unwrap(),
        serde_json::json!({"id": 1, "at": "2024-05-06T07:08:09.000000Z"})
    );

    // Identical rows within one run (one sink connection) are messages of their own.
    let mut again = rows[..10].to_vec();
    again.extend_from_slice(&rows[..2]);
    let again = sink.publish_batch(&again).await.unwrap();
    assert_eq!(again.duplicates, 0);
    assert_eq!(stream.info().await.unwrap().state.messages, 312);
    drop(sink);
    // A re-run publishes the same ids: the stream drops them as duplicates.
    let later = NatsSink::connect(&p, &cfg).await.unwrap();
    let third = later.publish_batch(&rows[..5]).await.unwrap();
    assert_eq!((third.published, third.duplicates), (5, 5));
    assert_eq!(stream.info().await.unwrap().state.messages, 312);
    drop(later);

    // With a unique_key: a re-run of the same rows stores nothing, a changed row is a new
    // message, and another pipeline publishing the same rows is not taken for this one.
    let keyed = nats_sink_config(&subject, Some(&name))
        .replace("      subject: ", "      unique_key: [id]\n      subject: ");
    let (p, cfg) = compile(&keyed);
    let run = NatsSink::connect(&p, &cfg).await.unwrap();
    assert_eq!(run.publish_batch(&rows).await.unwrap().duplicates, 0);
    assert_eq!(stream.info().await.unwrap().state.messages, 612);
    drop(run);
    let rerun = NatsSink::connect(&p, &cfg).await.unwrap();
    let mut changed = rows.clone();
    changed[6][1] = Value::Datetime(
        chrono::NaiveDate::from_ymd_opt(2025, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap(),
    );
    let report = rerun.publish_batch(&changed).await.unwrap();
    assert_eq!((report.published, report.duplicates), (300, 299));
    assert_eq!(stream.info().await.unwrap().state.messages, 613);
    let last = stream.get_raw_message(613).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&last.payload).unwrap(),
        serde_json::json!({"id": 7, "at": "2025-01-01T00:00:00.000000Z"})
    );
    drop(rerun);
    let (p, cfg) = compile(&keyed.replace("name: to_bus", "name: to_bus_too"));
    let other = NatsSink::connect(&p, &cfg).await.unwrap();
    assert_eq!(other.publish_batch(&rows[..3]).await.unwrap().duplicates, 0);
    assert_eq!(stream.info().await.unwrap().state.messages, 616);
    js.delete_stream(&name).await.unwrap();

    // A configured stream that does not exist is a clear error at connect.
    let (p, cfg) = compile(&nats_sink_config(&subject, Some("SYNCTOOL_NO_SUCH_STREAM")));
    let err = NatsSink::connect(&p, &cfg).await.unwrap_err();
    assert!(err.to_string().contains("SYNCTOOL_NO_SUCH_STREAM"), "{err}");
}

fn nats_source_config(subject: &str, extra: &str) -> String {
    format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}}
  - name: bus
    type: nats
    servers: ["{NATS}"]
    subject: {subject}
    per_msg_timeout: 0.5
    total_timeout: 20
{extra}
pipelines:
  - name: from_bus
    source:
      datastore: bus
      batch_size: 2
      fields:
        - {{column: id, dtype: int}}
        - {{column: amount, dtype: "decimal(10,2)"}}
        - {{column: at, dtype: datetime}}
    sink:
      datastore: pg
      table: out
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: amount, source_column: amount}}
        - {{column: at, source_column: at}}
"#
    )
}

fn event(i: i64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": i, "amount": format!("{i}.50"), "at": "2024-01-02T03:04:05.5Z", "extra": true
    }))
    .unwrap()
}

#[tokio::test]
async fn nats_jetstream_source_acks_only_after_ack() {
    let name = unique("SYNCTOOL_SRC");
    let subject = format!("synctool.test.{name}");
    let durable = format!("{name}_durable");
    let nc = nats_client().await;
    let js = async_nats::jetstream::new(nc.clone());
    create_stream(&js, &name, &subject).await;
    for i in 1..=5 {
        js.publish(subject.clone(), event(i).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let (p, cfg) = compile(&nats_source_config(
        &subject,
        &format!("    stream: {name}\n    durable: {durable}\n    max_msgs: 4"),
    ));
    let mut src = NatsSource::connect(&p, &cfg).await.unwrap();
    let consumer_info = || {
        let js = js.clone();
        let (name, durable) = (name.clone(), durable.clone());
        async move {
            let stream = js.get_stream(&name).await.unwrap();
            let mut c: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(&durable).await.unwrap();
            c.info().await.unwrap().clone()
        }
    };

    let b1 = src.next_batch().await.unwrap().expect("first batch");
    assert_eq!(b1.rows.len(), 2);
    assert_eq!(b1.rows[0]["id"], Value::Int(1));
    assert_eq!(
        b1.rows[0]["amount"],
        Value::Decimal(Decimal::parse("1.50").unwrap())
    );
    assert_eq!(
        b1.rows[1]["at"],
        Value::Datetime(
            chrono::NaiveDate::from_ymd_opt(2024, 1, 2)
                .unwrap()
                .and_hms_milli_opt(3, 4, 5, 500)
                .unwrap()
        )
    );
    // Delivered but not acknowledged until the sink commits.
    let info = consumer_info().await;
    assert_eq!(info.num_ack_pending, 2);
    assert_eq!(info.ack_floor.stream_sequence, 0);
    b1.ack.ack().await.unwrap();
    let info = consumer_info().await;
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.ack_floor.stream_sequence, 2);

    let b2 = src.next_batch().await.unwrap().expect("second batch");
    assert_eq!(
        b2.rows.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(),
        vec![Value::Int(3), Value::Int(4)]
    );
    // max_msgs = 4: the source is exhausted although a fifth message waits.
    assert!(src.next_batch().await.unwrap().is_none());
    assert_eq!(consumer_info().await.num_ack_pending, 2);
    b2.ack.ack().await.unwrap();
    let info = consumer_info().await;
    assert_eq!(info.ack_floor.stream_sequence, 4);
    assert_eq!(info.num_pending, 1, "message 5 stays for the next run");
    src.close().await.unwrap();

    // A new run of the durable consumer resumes after the acknowledged messages.
    let mut src = NatsSource::connect(&p, &cfg).await.unwrap();
    let b = src.next_batch().await.unwrap().expect("resumed batch");
    assert_eq!(b.rows.len(), 1);
    assert_eq!(b.rows[0]["id"], Value::Int(5));
    b.ack.ack().await.unwrap();
    assert!(
        src.next_batch().await.unwrap().is_none(),
        "per_msg_timeout ends it"
    );
    js.delete_stream(&name).await.unwrap();
}

#[tokio::test]
async fn nats_core_source_consumes_a_queue_group_until_idle() {
    let subject = format!("synctool.test.{}", unique("coresrc"));
    let (p, cfg) = compile(&nats_source_config(&subject, "    queue: workers"));
    let mut src = NatsSource::connect(&p, &cfg).await.unwrap();
    let nc = nats_client().await;
    for i in 1..=3 {
        nc.publish(subject.clone(), event(i).into()).await.unwrap();
    }
    nc.publish(subject.clone(), b"{\"id\": \"x\"}".to_vec().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let b1 = src.next_batch().await.unwrap().unwrap();
    assert_eq!(b1.rows.len(), 2);
    assert!(b1.ack.is_empty());
    b1.ack.ack().await.unwrap();
    let b2 = src.next_batch().await.unwrap().unwrap();
    assert_eq!(b2.rows.len(), 1);
    assert_eq!(b2.rows[0]["id"], Value::Int(3));
    // The malformed fourth message is an error naming the column.
    let err = src.next_batch().await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::Value { ref column, .. } if column == "id"),
        "{err:?}"
    );
    // Then nothing arrives for per_msg_timeout: done.
    let t = Instant::now();
    assert!(src.next_batch().await.unwrap().is_none());
    assert!(t.elapsed() < Duration::from_secs(3));
    src.close().await.unwrap();
}

/// A private nats-server requiring a token, on a free port; killed on drop.
struct TokenServer {
    child: std::process::Child,
    url: String,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn token_server(token: &str) -> TokenServer {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = std::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--auth", token])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("nats-server must be installed for this test: {e}"));
    let server = TokenServer {
        child,
        url: format!("nats://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nats-server did not start on port {port}");
}

#[tokio::test]
async fn nats_token_auth_works_and_a_wrong_token_is_never_shown() {
    use futures_util::StreamExt;
    let server = token_server("Right-T0ken-123").await;
    let subject = format!("synctool.test.{}", unique("auth"));
    let config = |token: &str| {
        nats_sink_config(&subject, None)
            .replace(&format!("[\"{NATS}\"]"), &format!("[\"{}\"]", server.url))
            .replace(
                "    subject: unused.default",
                &format!("    subject: unused.default\n    token: {token}"),
            )
    };
    let (p, cfg) = compile(&config("Right-T0ken-123"));
    let sink = NatsSink::connect(&p, &cfg).await.unwrap();
    let nc = async_nats::ConnectOptions::with_token("Right-T0ken-123".into())
        .connect(server.url.as_str())
        .await
        .unwrap();
    let mut sub = nc.subscribe(subject.clone()).await.unwrap();
    nc.flush().await.unwrap();
    // A freshly started server may still be settling its routes: publish until the
    // subscriber sees the message (core NATS is at-most-once), within a bounded time.
    let mut got = None;
    for _ in 0..10 {
        sink.publish_batch(&bus_rows(1)).await.unwrap();
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            got = m;
            break;
        }
    }
    let m = got.expect("the subscriber receives the published row within 5 s");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["id"],
        1
    );

    let (p, cfg) = compile(&config("Wrong-T0ken-456"));
    let err = NatsSink::connect(&p, &cfg).await.unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(matches!(err, RuntimeError::Connect { .. }), "{msg}");
    assert!(!msg.contains("Wrong-T0ken-456"), "{msg}");
    assert!(!format!("{cfg:?}").contains("Wrong-T0ken-456"));
}

// ---------------------------------------------------------------- secrets, errors, floats

/// Runs `synctool apply` of a PostgreSQL table `src` (created by `setup`, dropped after)
/// into a webhook at `base`, returning the output.
async fn apply_into_hook(
    src: &str,
    setup: &str,
    fields: &str,
    hook_extra: &str,
    base: &str,
) -> std::process::Output {
    let c = crate::support::pg().await;
    c.batch_execute(setup).await.unwrap();
    let yaml = format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: postgres, database: test}}
  - {{name: hooks, type: webhook, base_url: "{base}/", retries: 0{hook_extra}}}
pipelines:
  - name: to_hook
    source:
      datastore: pg
      table: {src}
      fields: {fields}
    sink:
      datastore: hooks
      url_path: /v1/rows
"#
    );
    let path = std::env::temp_dir().join(format!("{src}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_synctool"))
        .arg("-c")
        .arg(&path)
        .arg("apply")
        .output()
        .unwrap();
    c.batch_execute(&format!("DROP TABLE {src}")).await.unwrap();
    o
}

/// NaN and ±Infinity keep their meaning in a webhook payload instead of turning into NULL.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_payloads_carry_nan_and_infinity_as_strings() {
    let server = TestServer::start(|_, _| Reply::status(204)).await;
    let src = unique("hook_nan");
    let o = apply_into_hook(
        &src,
        &format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, x double precision);
             INSERT INTO {src} VALUES (1, 'NaN'), (2, 'Infinity'), (3, '-Infinity'), (4, 1.5), (5, NULL);"
        ),
        "[{column: id, dtype: int}, {column: x, dtype: float}]",
        "",
        &server.base,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let mut rows: Vec<serde_json::Value> = server
        .seen()
        .iter()
        .flat_map(|s| serde_json::from_slice::<Vec<serde_json::Value>>(&s.body).unwrap())
        .collect();
    rows.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(
        serde_json::Value::Array(rows),
        serde_json::json!([
            {"id": 1, "x": "NaN"},
            {"id": 2, "x": "Infinity"},
            {"id": 3, "x": "-Infinity"},
            {"id": 4, "x": 1.5},
            {"id": 5, "x": null}
        ])
    );
}

/// A refused batch: the error names the pipeline once and shows the start of the
/// receiver's answer, but no header value (even when the receiver echoes it).
#[tokio::test(flavor = "multi_thread")]
async fn webhook_4xx_errors_show_the_answer_and_name_the_pipeline_once() {
    let server = TestServer::start(|_, _| Reply {
        status: 422,
        body: format!(
            "{{\"error\": \"row 1: field `id` is not accepted\",\n \"echo\": \"X-Api-Key: EchoedKey123\", \"pad\": \"{}\"}}",
            "z".repeat(400)
        ),
        delay: Duration::ZERO,
        location: None,
        headers: Vec::new(),
    })
    .await;
    let src = unique("hook_422");
    let o = apply_into_hook(
        &src,
        &format!("CREATE TABLE {src} (id bigint PRIMARY KEY); INSERT INTO {src} VALUES (1);"),
        "[{column: id, dtype: int}]",
        ", headers: {X-Api-Key: EchoedKey123}",
        &server.base,
    )
    .await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("pipeline `to_hook`").count(), 1, "{err}");
    assert!(
        err.contains("error: pipeline `to_hook`: hooks: POST "),
        "{err}"
    );
    assert!(err.contains("HTTP 422 Unprocessable Entity: {\"error\": \"row 1: field `id` is not accepted\", \"echo\": \"X-Api-Key: ***\""), "{err}");
    assert!(!err.contains("EchoedKey123"), "{err}");
    assert!(err.contains("zzz…"), "the answer is cut: {err}");
    assert!(!err.contains(&"z".repeat(300)), "{err}");
}

/// NATS server URLs with credentials (`user:password@`, `token@`) never show them in
/// connection errors.
#[tokio::test]
async fn nats_connection_errors_hide_url_credentials() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (url, secrets) in [
        (
            format!("nats://natsuser:NatsPwSecret@127.0.0.1:{port}"),
            &["NatsPwSecret", "natsuser"][..],
        ),
        (
            format!("nats://NatsTokSecret8@127.0.0.1:{port}"),
            &["NatsTokSecret8"][..],
        ),
    ] {
        let yaml = nats_sink_config("s.x", None)
            .replace(&format!("[\"{NATS}\"]"), &format!("[\"{url}\"]"));
        let (p, cfg) = compile(&yaml);
        let err = NatsSink::connect(&p, &cfg).await.unwrap_err();
        let msg = format!("{err} {err:?}");
        assert!(matches!(err, RuntimeError::Connect { .. }), "{msg}");
        assert!(
            msg.contains(&format!(
                "datastore `bus` (nats://***@127.0.0.1:{port}): cannot connect"
            )),
            "{msg}"
        );
        for s in secrets {
            assert!(!msg.contains(s), "{msg}");
        }
        let yaml = nats_source_config("s.x", "")
            .replace(&format!("[\"{NATS}\"]"), &format!("[\"{url}\"]"));
        let (p, cfg) = compile(&yaml);
        let err = NatsSource::connect(&p, &cfg).await.unwrap_err();
        let msg = format!("{err} {err:?}");
        for s in secrets {
            assert!(!msg.contains(s), "{msg}");
        }
    }
}

#[tokio::test]
async fn nats_messages_carry_nan_and_infinity_as_strings() {
    let (p, cfg) = compile(&nats_sink_config("s.floats", None));
    let sink = NatsSink::connect(&p, &cfg).await.unwrap();
    for (f, want) in [
        (f64::NAN, "NaN"),
        (f64::INFINITY, "Infinity"),
        (f64::NEG_INFINITY, "-Infinity"),
    ] {
        let payload = sink.payload(&[Value::Int(1), Value::Float(f)]);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&payload).unwrap(),
            serde_json::json!({"id": 1, "at": want})
        );
    }
}

/// A row whose lookup input changed (the `zip` an HTTP path is built from, copied to no
/// sink column) is found by reconciliation and looked up again.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_lookup_input_is_drift_and_is_looked_up_again() {
    let server = TestServer::start(|seen, _| Reply::ok(city_of(&seen.uri))).await;
    let c = crate::support::pg().await;
    let (src, sink) = (unique("lk_src"), unique("lk_sink"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, name text, zip text);
         INSERT INTO {src} SELECT g, 'n' || g, '1000' || g FROM generate_series(1, 5) g;"
    ))
    .await
    .unwrap();
    let yaml = format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: postgres, database: test}}
externalstores:
  - {{name: geo, type: http, url: "{base}/api", retries: 0}}
pipelines:
  - name: lk
    source:
      datastore: pg
      table: {src}
      fields: [{{column: id, dtype: int}}, {{column: name, dtype: str}}, {{column: zip, dtype: str}}]
    sink:
      datastore: pg
      table: {sink}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: name, source_column: name}}
        - {{column: city, dtype: str, source: geo, source_column: city}}
      meta_columns: {{hash_column: _h}}
    enrichment:
      - {{externalstore: geo, name: geo, type: http, path: "TMPL(/zip/{{{{ zip }}}})", output: 'lambda v: {{"city": json_get(v, "city")}}'}}
    reconciliation:
      - {{name: by_id, partition_column: id}}
"#,
        base = server.base
    );
    let path = crate::support::write_config(&yaml);
    let run = |args: &[&str]| crate::support::synctool(&path, args);
    let o = run(&["apply"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    c.batch_execute(&format!("UPDATE {src} SET zip = '99999' WHERE id = 1"))
        .await
        .unwrap();
    let o = run(&["plan", "--exit-code"]);
    assert_eq!(o.status.code(), Some(3), "the changed zip is drift: {o:?}");
    let o = run(&["apply"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let city: String = c
        .query_one(&format!("SELECT city FROM {sink} WHERE id = 1"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(city, "city-99999");
    let o = run(&["plan", "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    c.batch_execute(&format!("DROP TABLE {src}; DROP TABLE {sink}"))
        .await
        .unwrap();
}

/// `examples/quickstart.yaml` — the seed README's pipeline — end to end, as written but for
/// its hosts and names: PostgreSQL users left-joined to orders, a filter, a template, a
/// pushed-down lambda, Redis and HTTP enrichment, into MariaDB, then reconciled. A user
/// without orders is kept (order id 0, NULL label).
#[tokio::test(flavor = "multi_thread")]
async fn the_quickstart_example_runs_end_to_end() {
    let server = TestServer::start(|seen, _| {
        let id = seen.uri.rsplit('=').next().unwrap_or("").to_string();
        Reply::ok(format!(r#"{{"user":{id},"score":700}}"#))
    })
    .await;
    let schema = unique("qs");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let base = 1_000_000_000 + i64::from(nanos % 1_000_000) * 10;
    let (alice, bob, carol) = (base + 1, base + 2, base + 3);
    let c = crate::support::pg().await;
    c.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.users (id bigint PRIMARY KEY, name text, active boolean, created_at timestamp);
         CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, user_id bigint, total double precision);
         INSERT INTO {schema}.users VALUES
           ({alice}, 'alice', true, '2021-05-01 10:00:00'),
           ({bob}, 'bob', true, '2022-06-01 11:00:00.5'),
           ({carol}, 'carol', false, '2023-07-01 12:00:00');
         INSERT INTO {schema}.orders VALUES (1, {alice}, 1500.5), (2, {alice}, 20), (3, {carol}, 5);"
    ))
    .await
    .unwrap();
    let mut redis = {
        let client = redis::Client::open(format!("redis://{REDIS}/1")).unwrap();
        client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("Redis must run on {REDIS} for this test: {e}"))
    };
    for (id, name) in [(alice, "Alice R."), (bob, "Bob R.")] {
        redis::cmd("SET")
            .arg(format!("user:{id}"))
            .arg(name)
            .query_async::<()>(&mut redis)
            .await
            .unwrap();
    }
    let db = unique("qs_sink");
    let yaml = include_str!("../../examples/quickstart.yaml")
        .replace("${PGHOST:-localhost}", "127.0.0.1")
        .replace("database: postgres", "database: test")
        .replace("${MYSQL_HOST:-localhost}", "127.0.0.1")
        .replace("username: mysql", "username: root")
        .replace("database: mysqldb", "database: test")
        .replace("host: redis.host.local", "host: 127.0.0.1")
        .replace("http://myurl.com", &server.base)
        .replace("dbschema: public", &format!("dbschema: {schema}"))
        .replace("dbschema: 'myschema'", &format!("dbschema: {db}"));
    let mut my = crate::support::mysql().await;
    crate::support::mysql_exec(&mut my, &format!("CREATE DATABASE {db}")).await;
    let path = crate::support::write_config(&yaml);
    let run = |args: &[&str]| crate::support::synctool(&path, args);
    let o = run(&["apply"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let rows = crate::support::mysql_rows(
        &mut my,
        &format!(
            "SELECT sname, CAST(sid AS CHAR), CAST(created_at AS CHAR), label, CAST(big_spender AS CHAR), redis_name, JSON_EXTRACT(credit_score, '$.score') FROM {db}.users ORDER BY sname, sid"
        ),
        mysql_async::Params::Empty,
    )
    .await;
    let r = |v: &[Option<&str>]| v.iter().map(|x| x.map(String::from)).collect::<Vec<_>>();
    assert_eq!(
        rows,
        vec![
            r(&[
                Some("alice"),
                Some("1"),
                Some("2021-05-01 10:00:00.000000"),
                Some("alice - $1500.5"),
                Some("1"),
                Some("Alice R."),
                Some("700")
            ]),
            r(&[
                Some("alice"),
                Some("2"),
                Some("2021-05-01 10:00:00.000000"),
                Some("alice - $20.0"),
                Some("0"),
                Some("Alice R."),
                Some("700")
            ]),
            r(&[
                Some("bob"),
                Some("0"),
                Some("2022-06-01 11:00:00.500000"),
                None,
                Some("0"),
                Some("Bob R."),
                Some("700")
            ]),
        ]
    );
    let o = run(&["plan", "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "no drift after the sync: {o:?}");
    // Bob orders: his order-less row goes, the order's comes.
    c.batch_execute(&format!(
        "INSERT INTO {schema}.orders VALUES (4, {bob}, 2000)"
    ))
    .await
    .unwrap();
    let o = run(&["plan", "--exit-code"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let o = run(&["apply"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let bobs = crate::support::mysql_rows(
        &mut my,
        &format!("SELECT CAST(sid AS CHAR), label FROM {db}.users WHERE sname = 'bob'"),
        mysql_async::Params::Empty,
    )
    .await;
    assert_eq!(bobs, vec![r(&[Some("4"), Some("bob - $2000.0")])]);
    let o = run(&["plan", "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    for id in [alice, bob] {
        let _ = redis::cmd("DEL")
            .arg(format!("user:{id}"))
            .query_async::<()>(&mut redis)
            .await;
    }
    crate::support::mysql_exec(&mut my, &format!("DROP DATABASE {db}")).await;
    c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// The test CA's directory (`scripts/services.sh` makes it; a missing one fails the test).
fn tls_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(
        std::env::var("SYNCTOOL_TEST_TLS_DIR").unwrap_or_else(|_| "/etc/synctool-test-tls".into()),
    );
    assert!(
        dir.join("ca.pem").is_file(),
        "the test CA is missing in {}: run scripts/services.sh",
        dir.display()
    );
    dir
}

/// Set `key` on the Redis over TLS at `port` (6380: client certificates optional; 6381:
/// required), through the redis crate with the test CA and client certificate.
async fn set_tls_key(port: u16, key: &str, value: &str) {
    let dir = tls_dir();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}/0"),
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: read("client.pem"),
                client_key: read("client.key"),
            }),
            root_cert: Some(read("ca.pem")),
        },
    )
    .unwrap();
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis over TLS must run on {port} for this test: {e}"));
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(&mut c)
        .await
        .unwrap();
}

/// One lookup of `code` through a store on `port` with `tls` (YAML keys); the looked-up
/// value, or the connect error.
async fn tls_lookup(port: u16, prefix: &str, tls: &str) -> Result<Value, String> {
    let yaml = redis_config("127.0.0.1", port, prefix, "")
        .replace("retries: 0}", &format!("retries: 0, {tls}}}"));
    let (p, cfg) = compile(&yaml);
    let enricher = Enricher::connect(&p, &cfg)
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = vec![row(&[("id", Value::Int(1)), ("code", s("a"))])];
    enricher.run(&mut rows).await.map_err(|e| e.to_string())?;
    Ok(rows[0]["segment"].clone())
}

#[tokio::test]
async fn redis_over_tls_verifies_the_server_and_can_present_a_client_certificate() {
    let dir = tls_dir();
    let ca = dir.join("ca.pem").display().to_string();
    let (cert, key) = (
        dir.join("client.pem").display().to_string(),
        dir.join("client.key").display().to_string(),
    );
    let prefix = format!("{}:", unique("synctool_test_tls"));
    set_tls_key(6380, &format!("{prefix}a"), "gold").await;
    set_tls_key(6381, &format!("{prefix}a"), "platinum").await;

    // Verified against the test CA, with or without checking the host name.
    for mode in ["verify-full", "verify-ca", "require"] {
        let tls = format!("sslmode: {mode}, sslrootcert: \"{ca}\"");
        assert_eq!(
            tls_lookup(6380, &prefix, &tls).await,
            Ok(s("gold")),
            "{mode}"
        );
    }
    // `require` alone encrypts without checking the certificate.
    assert_eq!(
        tls_lookup(6380, &prefix, "sslmode: require").await,
        Ok(s("gold"))
    );
    // `tls: true` verifies against the built-in roots, which do not hold the test CA: the
    // error says what to set.
    let err = tls_lookup(6380, &prefix, "tls: true").await.unwrap_err();
    assert!(
        err.contains("external store `cache` (127.0.0.1:6380)") && err.contains("sslrootcert"),
        "{err}"
    );
    // Plain text to a TLS port fails instead of sending the commands in clear.
    assert!(tls_lookup(6380, &prefix, "tls: false").await.is_err());

    // A server that requires a client certificate gets one with `sslcert`/`sslkey`.
    let with_ca = format!("tls: true, sslrootcert: \"{ca}\"");
    assert!(tls_lookup(6381, &prefix, &with_ca).await.is_err());
    let with_cert = format!("{with_ca}, sslcert: \"{cert}\", sslkey: \"{key}\"");
    assert_eq!(
        tls_lookup(6381, &prefix, &with_cert).await,
        Ok(s("platinum"))
    );
    // A missing file is named.
    let err = tls_lookup(6380, &prefix, "tls: true, sslrootcert: /nonexistent/ca.pem")
        .await
        .unwrap_err();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}

/// Publish two rows through a NATS sink whose datastore has `servers` and `tls` (YAML
/// keys), to the NATS over TLS on 4223 (`scripts/services.sh`); what a subscriber
/// connected with the test CA receives, or the connect error.
async fn publish_over_tls(servers: &str, tls: &str) -> Result<Vec<serde_json::Value>, String> {
    use futures_util::StreamExt;
    let ca = tls_dir().join("ca.pem");
    let subject = format!("synctool.test.{}", unique("tls"));
    let nc = async_nats::ConnectOptions::new()
        .add_root_certificates(ca)
        .require_tls(true)
        .connect("tls://127.0.0.1:4223")
        .await
        .unwrap_or_else(|e| panic!("NATS over TLS must run on 4223 for this test: {e}"));
    let mut sub = nc.subscribe(subject.clone()).await.unwrap();
    nc.flush().await.unwrap();
    let yaml = nats_sink_config(&subject, None).replace(
        &format!("servers: [\"{NATS}\"]"),
        &format!("servers: [\"{servers}\"]\n    {tls}"),
    );
    let (p, cfg) = compile(&yaml);
    let sink = NatsSink::connect(&p, &cfg)
        .await
        .map_err(|e| e.to_string())?;
    sink.publish_batch(&bus_rows(2)).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("message within 5 s")
            .unwrap();
        got.push(serde_json::from_slice(&m.payload).unwrap());
    }
    Ok(got)
}

#[tokio::test]
async fn nats_over_tls_verifies_the_server_with_sslrootcert() {
    let ca = tls_dir().join("ca.pem").display().to_string();
    let root = format!("sslrootcert: \"{ca}\"");
    // A `tls://` server, or `sslmode`, verified against the test CA.
    for (servers, tls) in [
        ("tls://127.0.0.1:4223", root.clone()),
        (
            "nats://127.0.0.1:4223",
            format!("sslmode: verify-full\n    {root}"),
        ),
        ("nats://127.0.0.1:4223", "sslmode: require".to_string()),
    ] {
        let got = publish_over_tls(servers, &tls).await;
        assert_eq!(
            got.as_ref().map(|g| g[1]["id"].clone()),
            Ok(serde_json::json!(2)),
            "{servers} {tls}"
        );
    }
    // Without the CA the certificate is refused, and the error says what to set.
    for (servers, tls) in [
        ("tls://127.0.0.1:4223", ""),
        ("nats://127.0.0.1:4223", "tls: true"),
    ] {
        let err = publish_over_tls(servers, tls).await.unwrap_err();
        assert!(err.contains("sslrootcert"), "{servers} {tls}: {err}");
    }
}

/// A port nothing listens on (bound, then let go).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `on_error: null` over a store outage: the rows whose lookups failed get NULL outputs,
/// but their stored row hash marks them as not in sync, so that `plan` reports them and
/// the next reconciliation looks them up again. Lookups that found nothing (a missing
/// Redis key, a JSON `null` answer) are not failures: those rows stay in sync. The
/// warning counts rows, not (row, enrichment) pairs.
#[tokio::test(flavor = "multi_thread")]
async fn rows_nulled_by_a_failed_lookup_are_drift_until_the_store_answers() {
    let server = TestServer::start(|seen, _| {
        let zip = seen.uri.rsplit('/').next().unwrap_or("").to_string();
        if seen.uri.starts_with("/api/region/") {
            Reply::ok(format!(r#"{{"region": "r-{zip}"}}"#))
        } else if zip == "10004" {
            // Found nothing.
            Reply::ok("null")
        } else {
            Reply::ok(city_of(&seen.uri))
        }
    })
    .await;
    let c = crate::support::pg().await;
    let (src, sink) = (unique("nl_src"), unique("nl_sink"));
    let prefix = format!("{}:", unique("qaenr_nl"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, name text, zip text);
         INSERT INTO {src} SELECT g, 'n' || g, '1000' || g FROM generate_series(1, 6) g;"
    ))
    .await
    .unwrap();
    // No key for row 6: found nothing.
    let names: Vec<(String, String)> = (1..=5)
        .map(|i| (format!("n{i}"), format!("nick{i}")))
        .collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    set_keys(&prefix, &pairs).await;
    let yaml = |base: &str| {
        format!(
            r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: postgres, database: test}}
externalstores:
  - {{name: geo, type: http, url: "{base}/api", retries: 0, timeout: 2}}
  - {{name: kv, type: redis, host: 127.0.0.1, port: 6379}}
pipelines:
  - name: nl
    source:
      datastore: pg
      table: {src}
      fields: [{{column: id, dtype: int}}, {{column: name, dtype: str}}, {{column: zip, dtype: str}}]
    sink:
      datastore: pg
      table: {sink}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: nick, dtype: str, source: nick, source_column: nick}}
        - {{column: city, dtype: str, source: geo, source_column: city}}
        - {{column: region, dtype: str, source: reg, source_column: region}}
      meta_columns: {{hash_column: _h}}
    enrichment:
      - {{externalstore: kv, name: nick, key_template: "TMPL({prefix}{{{{ name }}}})", on_error: null}}
      - {{externalstore: geo, name: geo, path: "TMPL(/zip/{{{{ zip }}}})", output: 'lambda v: {{"city": json_get(v, "city")}}', on_error: null}}
      - {{externalstore: geo, name: reg, path: "TMPL(/region/{{{{ zip }}}})", output: 'lambda v: {{"region": json_get(v, "region")}}', on_error: null}}
    reconciliation:
      - {{name: by_id, strategy: md5sum_hash, partition_column: id}}
"#
        )
    };
    let up = crate::support::write_config(&yaml(&server.base));
    let down = crate::support::write_config(&yaml(&format!("http://127.0.0.1:{}", dead_port())));
    let sink_rows = || async {
        crate::support::pg_rows(
            &c,
            &format!("SELECT id::text, nick, city, region FROM {sink} ORDER BY id"),
            &[],
        )
        .await
    };
    let some = |x: &str| Some(x.to_string());

    let o = crate::support::synctool(&up, &["apply"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let filled = sink_rows().await;
    assert_eq!(filled.len(), 6);
    assert_eq!(
        filled[0],
        vec![
            some("1"),
            some("nick1"),
            some("city-10001"),
            some("r-10001")
        ]
    );
    assert_eq!(filled[3][2], None, "the API found no city for 10004");
    assert_eq!(filled[5][1], None, "no Redis key for n6");
    let o = crate::support::synctool(&up, &["plan", "--exit-code"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "found-nothing rows are in sync: {o:?}"
    );

    // The API is down for a full run: NULL outputs, one warning counting rows.
    let o = crate::support::synctool(&down, &["apply", "--full"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("6 rows given NULL enrichment outputs"),
        "{stderr}"
    );
    let blanked = sink_rows().await;
    assert!(
        blanked.iter().all(|r| r[2].is_none() && r[3].is_none()),
        "{blanked:?}"
    );
    assert_eq!(blanked[0][1], some("nick1"));

    // Back up: those rows are drift, and a reconciliation repairs them.
    let o = crate::support::synctool(&up, &["plan", "--exit-code"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "rows nulled by a failed lookup are drift: {o:?}"
    );
    let o = crate::support::synctool(&up, &["apply"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(sink_rows().await, filled);
    let o = crate::support::synctool(&up, &["plan", "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");

    let keys: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    del_keys(&prefix, &keys).await;
    c.batch_execute(&format!("DROP TABLE {src}; DROP TABLE {sink}"))
        .await
        .unwrap();
}

/// A NUL character in an enrichment output bound for PostgreSQL text, or a `\u0000` in a
/// JSON document bound for an existing `jsonb` column, is refused before the write, naming
/// the row's key and the column, though the source is PostgreSQL; a `json` column (what
/// synctool creates) keeps the document.
#[tokio::test(flavor = "multi_thread")]
async fn a_nul_in_an_enrichment_output_for_postgres_names_the_row() {
    let server = TestServer::start(|seen, _| {
        let zip = seen.uri.rsplit('/').next().unwrap_or("").to_string();
        let bad = zip == "10003";
        if seen.uri.starts_with("/api/doc/") {
            let v = if bad { "x\\u0000y" } else { "fine" };
            Reply::ok(format!(r#"{{"k": "{v}"}}"#))
        } else {
            let v = if bad { "a\\u0000b" } else { "fine" };
            Reply::ok(format!(r#"{{"city": "{v}"}}"#))
        }
    })
    .await;
    let c = crate::support::pg().await;
    let src = unique("nul_src");
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, zip text);
         INSERT INTO {src} SELECT g, '1000' || g FROM generate_series(1, 5) g;"
    ))
    .await
    .unwrap();
    let yaml = |sink: &str, field: &str, enrichment: &str| {
        format!(
            r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: postgres, database: test}}
externalstores:
  - {{name: geo, type: http, url: "{base}/api", retries: 0}}
pipelines:
  - name: nul
    source:
      datastore: pg
      table: {src}
      fields: [{{column: id, dtype: int}}, {{column: zip, dtype: str}}]
    sink:
      datastore: pg
      table: {sink}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {field}
    enrichment:
      - {enrichment}
"#,
            base = server.base
        )
    };
    let cases = [
        (
            "city",
            "{column: city, dtype: str, source: geo, source_column: city}",
            r#"{externalstore: geo, name: geo, path: "TMPL(/zip/{{ zip }})", output: 'lambda v: {"city": json_get(v, "city")}'}"#,
            "text with a NUL character",
            None,
        ),
        (
            "doc",
            "{column: doc, dtype: json, source: doc, source_column: doc}",
            r#"{externalstore: geo, name: doc, path: "TMPL(/doc/{{ zip }})"}"#,
            "a JSON document with a NUL character (\\u0000), which PostgreSQL's jsonb cannot hold",
            // A table synctool creates keeps documents in `json`, which holds a `\u0000`.
            Some("CREATE TABLE {sink} (id bigint PRIMARY KEY, doc jsonb)"),
        ),
    ];
    for (column, field, enrichment, why, pre) in cases {
        let sink = unique("nul_sink");
        if let Some(pre) = pre {
            c.batch_execute(&pre.replace("{sink}", &sink))
                .await
                .unwrap();
        }
        let path = crate::support::write_config(&yaml(&sink, field, enrichment));
        let o = crate::support::synctool(&path, &["apply"]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{column}: {o:?}");
        assert!(
            stderr.contains(&format!("row with key (id=3) column `{column}`: {why}")),
            "{column}: {stderr}"
        );
        assert!(
            !stderr.contains("22021") && !stderr.contains("22P05"),
            "{stderr}"
        );
        c.batch_execute(&format!("DROP TABLE IF EXISTS {sink}"))
            .await
            .unwrap();
    }
    // Into a table synctool creates (`json`), the document is kept, `\u0000` included.
    let sink = unique("nul_sink");
    let (_, field, enrichment, _, _) = cases[1];
    let path = crate::support::write_config(&yaml(&sink, field, enrichment));
    let o = crate::support::synctool(&path, &["apply"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let doc = crate::support::pg_rows(
        &c,
        &format!("SELECT doc::text FROM {sink} WHERE id = 3"),
        &[],
    )
    .await;
    assert_eq!(doc, vec![vec![Some(r#"{"k":"x\u0000y"}"#.to_string())]]);
    c.batch_execute(&format!("DROP TABLE {src}, {sink}"))
        .await
        .unwrap();
}

// ---------------------------------------------------------------- HTTP: rate limits, large and broken answers

/// When the requests for `uri` arrived, relative to the first.
fn arrivals(server: &TestServer, uri: &str) -> Vec<Duration> {
    let at: Vec<Instant> = server
        .seen()
        .iter()
        .filter(|s| s.uri == uri)
        .map(|s| s.at)
        .collect();
    at.iter().map(|t| *t - at[0]).collect()
}

/// A 429 or 503 with `Retry-After` (delta-seconds or an HTTP-date) is retried no sooner
/// than it asks; one asking for more than a minute is not retried at all.
#[tokio::test]
async fn http_lookups_wait_as_long_as_retry_after_asks() {
    let server = TestServer::start(|seen, n| {
        if seen.uri.starts_with("/api/zip/busy") && n < 2 {
            Reply::status(429).header("retry-after", "1")
        } else if seen.uri.starts_with("/api/zip/down") && n < 1 {
            let at = std::time::SystemTime::now() + Duration::from_secs(2);
            Reply::status(503).header("retry-after", httpdate::fmt_http_date(at))
        } else if seen.uri.starts_with("/api/zip/quota") {
            Reply::status(429).header("retry-after", "3600")
        } else {
            Reply::ok(city_of(&seen.uri))
        }
    })
    .await;
    let (p, cfg) = compile(&http_config(
        &server.base,
        "    retries: 3",
        "        on_error: fail",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();

    let mut rows = zip_rows(&["busy"]);
    e.run(&mut rows).await.unwrap();
    assert_eq!(rows[0]["city"], j("city-busy"));
    let t = arrivals(&server, "/api/zip/busy?country=de+%26+at");
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t[1] >= Duration::from_secs(1), "{t:?}");
    assert!(t[2] - t[1] >= Duration::from_secs(1), "{t:?}");

    // An HTTP-date two seconds ahead (whole seconds: more than one second from now).
    let mut rows = zip_rows(&["down"]);
    e.run(&mut rows).await.unwrap();
    let t = arrivals(&server, "/api/zip/down?country=de+%26+at");
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t[1] >= Duration::from_secs(1), "{t:?}");

    let err = e.run(&mut zip_rows(&["quota"])).await.unwrap_err();
    let msg = err.to_string();
    assert_eq!(server.count("/api/zip/quota?country=de+%26+at"), 1, "{msg}");
    assert!(msg.contains("HTTP 429 Too Many Requests"), "{msg}");
    assert!(msg.contains("asked to wait 3600 s (Retry-After)"), "{msg}");
    assert!(msg.contains("(after 1 attempt)"), "{msg}");
}

/// A 429 without `Retry-After` is retried after 1 s, then 2 s (rate limits count per
/// second or longer), not after the 100 ms backoff of other failures.
#[tokio::test]
async fn http_lookups_throttled_without_retry_after_wait_seconds() {
    let server = TestServer::start(|seen, n| {
        if seen.uri.starts_with("/api/zip/busy") && n < 2 {
            Reply::status(429)
        } else {
            Reply::ok(city_of(&seen.uri))
        }
    })
    .await;
    let (p, cfg) = compile(&http_config(
        &server.base,
        "    retries: 3",
        "        on_error: fail",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = zip_rows(&["busy"]);
    e.run(&mut rows).await.unwrap();
    assert_eq!(rows[0]["city"], j("city-busy"));
    let t = arrivals(&server, "/api/zip/busy?country=de+%26+at");
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t[1] >= Duration::from_secs(1), "{t:?}");
    assert!(t[2] - t[1] >= Duration::from_secs(2), "{t:?}");
}

/// A webhook receiver's `Retry-After` is waited for too, with the same idempotency key.
#[tokio::test]
async fn webhook_posts_wait_as_long_as_retry_after_asks() {
    let server = TestServer::start(|_, n| {
        if n < 1 {
            Reply::status(429).header("retry-after", "1")
        } else {
            Reply::status(204)
        }
    })
    .await;
    let (p, cfg) = compile(&webhook_config(&server.base));
    let sink = WebhookSink::new(&p, &cfg).unwrap();
    let receipt = sink.send_batch(&webhook_rows(2)).await.unwrap();
    assert_eq!(receipt.attempts, 2);
    let t = arrivals(&server, "/v1/rows");
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t[1] >= Duration::from_secs(1), "{t:?}");
    assert!(server
        .seen()
        .iter()
        .all(|s| s.headers["idempotency-key"] == receipt.idempotency_key));
}

/// A lookup error never carries a whole large answer: the value is cut to 200 characters
/// with its length, in the error, the `on_error` summary and a skipped row's reason alike.
#[tokio::test]
async fn http_lookup_errors_show_only_the_start_of_a_large_answer() {
    let body = format!("<html>{}", "é".repeat(1_000_000));
    let len = body.len();
    let server = TestServer::start(move |_, _| Reply::ok(body.clone())).await;
    let yaml = |on_error: &str| {
        http_config(&server.base, "", &format!("        on_error: {on_error}")).replace(
            r#"lambda v: {"city": json_get(v, "city")}"#,
            r#"lambda v: {"city": str(int(v))}"#,
        )
    };
    let cut = format!("… ({len} bytes in all)");
    let (p, cfg) = compile(&yaml("fail"));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let msg = e
        .run(&mut zip_rows(&["big"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.len() < 1000, "{} bytes: {}", msg.len(), &msg[..300]);
    assert!(
        msg.contains(&format!("cannot convert <html>{}{cut}", "é".repeat(194))),
        "{msg}"
    );
    assert_eq!(server.seen().len(), 1, "a whole answer is not retried");

    for on_error in ["null", "skip"] {
        let (p, cfg) = compile(&yaml(on_error));
        let e = Enricher::connect(&p, &cfg).await.unwrap();
        let report = e.run(&mut zip_rows(&["big", "big"])).await.unwrap();
        let summary = e.tally().summary().unwrap();
        assert!(summary.len() < 1000, "{summary}");
        assert!(summary.contains(&cut), "{summary}");
        for s in &report.skipped {
            assert!(
                s.reason.len() < 1000 && s.reason.contains(&cut),
                "{}",
                s.reason
            );
        }
    }
}

/// What a raw test server answers on one connection.
enum Raw {
    /// These bytes, then the connection is closed.
    Once(Vec<u8>),
    /// A chunked 200 whose chunks never end (until the client goes away).
    Endless,
}

/// A bare TCP server speaking just enough HTTP/1.1 to answer a GET as `answer(n)` says for
/// its `n`-th connection (from 0); returns the base URL and the connection count.
async fn raw_server(
    answer: impl Fn(usize) -> Raw + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let (count2, answer) = (count.clone(), Arc::new(answer));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = count2.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => req.extend_from_slice(&buf[..k]),
                    }
                }
                match answer(n) {
                    Raw::Once(bytes) => {
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                    }
                    Raw::Endless => {
                        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                        if stream.write_all(head).await.is_err() {
                            return;
                        }
                        let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                        while stream.write_all(chunk.as_bytes()).await.is_ok() {}
                    }
                }
            });
        }
    });
    (base, count)
}

/// An answer larger than `max_response_bytes` fails its lookup (under `on_error`) without
/// being read whole: at once when its `Content-Length` says so, else once that much came.
#[tokio::test]
async fn http_answers_beyond_max_response_bytes_fail_the_lookup() {
    let server = TestServer::start(|_, _| Reply::ok(format!("\"{}\"", "x".repeat(5000)))).await;
    let (p, cfg) = compile(&http_config(
        &server.base,
        "    max_response_bytes: 4096\n    retries: 2",
        "        on_error: skip",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = zip_rows(&["big", "big"]);
    let report = e.run(&mut rows).await.unwrap();
    assert!(rows.is_empty());
    let reason = &report.skipped[0].reason;
    assert!(
        reason.contains("the answer is 5002 bytes (Content-Length), more than the 4096 bytes store `geo` accepts (its `max_response_bytes`)"),
        "{reason}"
    );
    assert_eq!(server.seen().len(), 1, "a too large answer is not retried");

    // No Content-Length, and no end: reading stops at the limit.
    let (base, conns) = raw_server(|_| Raw::Endless).await;
    let (p, cfg) = compile(&http_config(
        &base,
        "    max_response_bytes: 1000000\n    timeout: 20\n    retries: 2",
        "        on_error: fail",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let msg = e
        .run(&mut zip_rows(&["endless"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("more than the 1000000 bytes store `geo` accepts (its `max_response_bytes`)"),
        "{msg}"
    );
    assert!(msg.contains("(after 1 attempt)"), "{msg}");
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

/// An answer whose body breaks off before its `Content-Length` is retried, like a reset
/// connection.
#[tokio::test]
async fn http_answers_cut_off_in_transfer_are_retried() {
    let (base, conns) = raw_server(|n| {
        let body = r#"{"city": "city-cut"}"#;
        Raw::Once(if n == 0 {
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"city\": \"ci".to_vec()
        } else {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
    })
    .await;
    let (p, cfg) = compile(&http_config(
        &base,
        "    retries: 2",
        "        on_error: fail",
    ));
    let e = Enricher::connect(&p, &cfg).await.unwrap();
    let mut rows = zip_rows(&["cut"]);
    e.run(&mut rows).await.unwrap();
    assert_eq!(rows[0]["city"], j("city-cut"));
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}
