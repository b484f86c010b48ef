//! `synctool apply` / `plan` with a NATS JetStream source, end to end: the built binary
//! consumes JSON messages from a stream on the real NATS server (127.0.0.1:4222, JetStream
//! enabled) into PostgreSQL (127.0.0.1:5432, postgres, database test) and MariaDB
//! (127.0.0.1:3306, root, database test). Every test makes its own stream, subject, durable
//! consumer and tables. A missing service fails the test, naming it.

use crate::support::{mysql, mysql_exec, mysql_rows, pg, pg_rows, unique, Row};
use crate::support::{synctool, write_config};
use async_nats::jetstream;
use serde_json::{json, Value as J};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NATS: &str = "nats://127.0.0.1:4222";

async fn js() -> jetstream::Context {
    let nc = async_nats::connect(NATS)
        .await
        .unwrap_or_else(|e| panic!("NATS must run on {NATS} for this test: {e}"));
    jetstream::new(nc)
}

/// A stream `name` on `subject`, plus the publishing context.
async fn stream(name: &str, subject: &str) -> jetstream::Context {
    let js = js().await;
    js.create_stream(jetstream::stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("JetStream must be enabled on {NATS}: {e}"));
    js
}

async fn publish(js: &jetstream::Context, subject: &str, msgs: &[J]) {
    for m in msgs {
        js.publish(subject.to_string(), serde_json::to_vec(m).unwrap().into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }
}

/// The durable consumer's state: (acknowledged floor, unacknowledged, not yet delivered).
async fn consumer_state(js: &jetstream::Context, stream: &str, durable: &str) -> (u64, usize, u64) {
    let s = js.get_stream(stream).await.expect("stream");
    let info = s.consumer_info(durable).await.expect("consumer info");
    (
        info.ack_floor.stream_sequence,
        info.num_ack_pending,
        info.num_pending,
    )
}

/// Message `i`: odd ids carry the amount as a JSON number, even ones as a string (the NATS
/// sink's decimal encoding); id 2 has a null name, id 4 no `ok` key, and every message an
/// extra key the fields do not pick.
fn message(i: i64) -> J {
    let mut m = json!({
        "id": i,
        "name": format!("n{i}"),
        "amount": if i % 2 == 1 { json!(i as f64 + 0.25) } else { json!(format!("{i}.25")) },
        "at": format!("2024-01-02T03:04:{:02}.5Z", i),
        "ok": i % 2 == 0,
        "ignored": [1, 2],
    });
    if i == 2 {
        m["name"] = J::Null;
    }
    if i == 4 {
        m.as_object_mut().unwrap().remove("ok");
    }
    m
}

/// The sink row of [`message`] `i` as text: id, name, amount, at, ok (as `t`/`f`), big.
fn expected(i: i64, truth: (&str, &str)) -> Row {
    let ok = match i {
        4 => None,
        _ if i % 2 == 0 => Some(truth.0.to_string()),
        _ => Some(truth.1.to_string()),
    };
    vec![
        Some(i.to_string()),
        (i != 2).then(|| format!("n{i}")),
        Some(format!("{i}.25")),
        Some(format!("2024-01-02 03:04:{i:02}.500000")),
        ok,
        Some(if i > 3 { "1" } else { "0" }.to_string()),
    ]
}

fn config(
    subject: &str,
    stream: &str,
    durable: &str,
    sink: &str,
    table: &str,
    extra: &str,
) -> String {
    format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, port: 5432, username: postgres, database: test}}
  - {{name: my, type: mysql, host: 127.0.0.1, port: 3306, username: root, database: test}}
  - name: bus
    type: nats
    servers: ["{NATS}"]
    subject: {subject}
    stream: {stream}
    durable: {durable}
    per_msg_timeout: 0.5
    total_timeout: 30
{extra}
pipelines:
  - name: from_bus
    source:
      datastore: bus
      batch_size: 3
      fields:
        - {{column: id, dtype: int}}
        - {{column: name, dtype: str}}
        - {{column: amount, dtype: "decimal(10,2)"}}
        - {{column: at, dtype: datetime}}
        - {{column: ok, dtype: bool}}
    sink:
      datastore: {sink}
      table: {table}
      unique_key: [id]
      merge_strategy: {{strategy: upsert}}
      fields:
        - {{column: id, source_column: id}}
        - {{column: name, source_column: name}}
        - {{column: amount, source_column: amount}}
        - {{column: at, source_column: at}}
        - {{column: ok, source_column: ok}}
        - {{column: big, dtype: int, source_column: 'lambda r: 1 if r["id"] > 3 else 0'}}
"#
    )
}

/// `synctool <args> --format json`, asserting exit code 0; returns (rows_read, rows_written).
fn run_ok(cfg: &std::path::Path, args: &[&str]) -> (i64, i64) {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let o = synctool(cfg, &all);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "synctool {args:?}:\n{err}");
    let v: J = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("JSON: {e}\n{err}"));
    let p = &v["pipelines"][0];
    assert_eq!(p["mode"], "full", "{v}");
    (
        p["rows_read"].as_i64().unwrap(),
        p["rows_written"].as_i64().unwrap(),
    )
}

/// `synctool apply`, asserting exit code 1; returns stderr.
fn run_fails(cfg: &std::path::Path) -> String {
    let o = synctool(cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "apply should fail:\n{err}");
    err
}

fn pg_select(t: &str) -> String {
    format!(
        "SELECT id::text, name, amount::text, to_char(at, 'YYYY-MM-DD HH24:MI:SS.US'), ok::text, big::text FROM {t} ORDER BY id"
    )
}

fn my_select(t: &str) -> String {
    format!(
        "SELECT CAST(id AS CHAR), name, CAST(amount AS CHAR), DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f'), CAST(ok AS CHAR), CAST(big AS CHAR) FROM {t} ORDER BY id"
    )
}

/// The config `text` with `from` replaced by `to` (a field that now fits the bad message),
/// writing into a table of its own; and that table's name.
fn fixed_config(text: &str, table: &str, (from, to): (&str, &str)) -> (String, String) {
    let fixed_table = format!("{table}_fixed");
    let fixed = text.replace(from, to).replace(
        &format!("table: {table}\n"),
        &format!("table: {fixed_table}\n"),
    );
    assert_ne!(fixed, text, "the config changed");
    (fixed, fixed_table)
}

struct Names {
    stream: String,
    subject: String,
    durable: String,
    table: String,
}

fn names(tag: &str) -> Names {
    let u = unique(tag);
    Names {
        stream: u.to_uppercase(),
        subject: format!("synctool.test.{u}"),
        durable: format!("{u}_durable"),
        table: u,
    }
}

#[tokio::test]
async fn nats_source_into_postgres_acks_after_commit_and_reruns_write_nothing() {
    let n = names("nats_src_pg");
    let js = stream(&n.stream, &n.subject).await;
    publish(&js, &n.subject, &(1..=7).map(message).collect::<Vec<_>>()).await;
    let cfg = write_config(&config(
        &n.subject, &n.stream, &n.durable, "pg", &n.table, "",
    ));

    // plan consumes nothing: no durable consumer yet, so it counts the subject's messages.
    assert_eq!(run_ok(&cfg, &["plan"]), (7, 7));
    let s = js.get_stream(&n.stream).await.unwrap();
    assert!(
        s.consumer_info(&n.durable).await.is_err(),
        "plan created no consumer"
    );

    assert_eq!(run_ok(&cfg, &["apply"]), (7, 7));
    let c = pg().await;
    let rows = pg_rows(&c, &pg_select(&n.table), &[]).await;
    let want: Vec<Row> = (1..=7).map(|i| expected(i, ("true", "false"))).collect();
    assert_eq!(rows, want);
    assert_eq!(consumer_state(&js, &n.stream, &n.durable).await, (7, 0, 0));

    // Nothing new: the durable consumer resumes after the acknowledged messages.
    assert_eq!(run_ok(&cfg, &["plan"]), (0, 0));
    assert_eq!(run_ok(&cfg, &["apply"]), (0, 0));

    // New messages, one of them an update of an existing key: only those are written.
    let mut m3 = message(3);
    m3["name"] = json!("renamed");
    publish(&js, &n.subject, &[m3, message(8)]).await;
    assert_eq!(run_ok(&cfg, &["plan"]), (2, 2));
    assert_eq!(consumer_state(&js, &n.stream, &n.durable).await, (7, 0, 2));
    assert_eq!(run_ok(&cfg, &["apply"]), (2, 2));
    let rows = pg_rows(&c, &pg_select(&n.table), &[]).await;
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[2][1].as_deref(), Some("renamed"));
    assert_eq!(rows[7], expected(8, ("true", "false")));
    c.batch_execute(&format!("DROP TABLE {}", n.table))
        .await
        .unwrap();
    js.delete_stream(&n.stream).await.unwrap();
}

#[tokio::test]
async fn nats_source_into_mariadb_value_by_value_and_max_msgs_stops_early() {
    let n = names("nats_src_my");
    let js = stream(&n.stream, &n.subject).await;
    publish(&js, &n.subject, &(1..=7).map(message).collect::<Vec<_>>()).await;
    let cfg = write_config(&config(
        &n.subject,
        &n.stream,
        &n.durable,
        "my",
        &n.table,
        "    max_msgs: 5",
    ));
    assert_eq!(
        run_ok(&cfg, &["plan"]),
        (5, 5),
        "plan counts at most max_msgs"
    );
    // max_msgs = 5 with batches of 3: 3 + 2, and two messages stay for the next run.
    assert_eq!(run_ok(&cfg, &["apply"]), (5, 5));
    assert_eq!(consumer_state(&js, &n.stream, &n.durable).await, (5, 0, 2));
    let mut c = mysql().await;
    let rows = mysql_rows(&mut c, &my_select(&n.table), ().into()).await;
    let want: Vec<Row> = (1..=5).map(|i| expected(i, ("1", "0"))).collect();
    assert_eq!(rows, want);

    assert_eq!(run_ok(&cfg, &["apply"]), (2, 2));
    assert_eq!(run_ok(&cfg, &["apply"]), (0, 0));
    let rows = mysql_rows(&mut c, &my_select(&n.table), ().into()).await;
    let want: Vec<Row> = (1..=7).map(|i| expected(i, ("1", "0"))).collect();
    assert_eq!(rows, want);
    mysql_exec(&mut c, &format!("DROP TABLE {}", n.table)).await;
    js.delete_stream(&n.stream).await.unwrap();
}

#[tokio::test]
async fn a_bad_nats_message_fails_the_run_unacknowledged_and_a_fixed_run_gets_it() {
    let n = names("nats_src_bad");
    let js = stream(&n.stream, &n.subject).await;
    let mut msgs: Vec<J> = (1..=6).map(message).collect();
    msgs[4]["amount"] = json!("n/a"); // stream sequence 5
    publish(&js, &n.subject, &msgs).await;
    let text = config(&n.subject, &n.stream, &n.durable, "pg", &n.table, "");
    let cfg = write_config(&text);
    let err = run_fails(&cfg);
    assert!(
        err.contains("stream sequence 5") && err.contains("amount") && err.contains(&n.subject),
        "{err}"
    );
    // The rows before the bad message were committed and acknowledged (1-3, then 4, which
    // came before it in the second batch); nothing after it was written.
    let c = pg().await;
    let ids = pg_rows(
        &c,
        &format!("SELECT id::text FROM {} ORDER BY id", n.table),
        &[],
    )
    .await;
    let want: Vec<Row> = (1..=4).map(|i| vec![Some(i.to_string())]).collect();
    assert_eq!(ids, want);
    assert_eq!(consumer_state(&js, &n.stream, &n.durable).await.0, 4);

    // Fixed: the amount is read as text (into another table). The run gets the bad message
    // again at once, and what follows it.
    let (fixed, fixed_table) = fixed_config(
        &text,
        &n.table,
        (
            "{column: amount, dtype: \"decimal(10,2)\"}",
            "{column: amount, dtype: str}",
        ),
    );
    let cfg = write_config(&fixed);
    let started = Instant::now();
    assert_eq!(run_ok(&cfg, &["apply"]), (2, 2));
    // At once: not after the consumer's 30 s ack wait.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let rows = pg_rows(
        &c,
        &format!("SELECT id::text, amount FROM {fixed_table} ORDER BY id"),
        &[],
    )
    .await;
    assert_eq!(
        rows,
        vec![
            vec![Some("5".into()), Some("n/a".into())],
            vec![Some("6".into()), Some("6.25".into())],
        ]
    );
    assert_eq!(consumer_state(&js, &n.stream, &n.durable).await, (6, 0, 0));
    c.batch_execute(&format!("DROP TABLE {}; DROP TABLE {fixed_table}", n.table))
        .await
        .unwrap();
    js.delete_stream(&n.stream).await.unwrap();
}

/// A refused message holds back every message after it, run after run, so that a newer
/// value of its key is never written before it: the pull that delivered it has ended before
/// it is handed back, and a run takes handed-back messages in stream order.
#[tokio::test]
async fn a_refused_message_keeps_newer_values_of_its_key_behind_it() {
    let n = names("nats_src_order");
    let js = stream(&n.stream, &n.subject).await;
    let mut msgs = vec![message(1), message(5), message(5), message(6)];
    msgs[1]["name"] = json!("OLD");
    msgs[1]["amount"] = json!("1.234"); // more digits than decimal(10,2) keeps
    msgs[2]["name"] = json!("NEW");
    publish(&js, &n.subject, &msgs).await;
    // Batches larger than the messages: the pull is still open when the bad one is read.
    let text = config(&n.subject, &n.stream, &n.durable, "pg", &n.table, "")
        .replace("batch_size: 3", "batch_size: 10");
    let cfg = write_config(&text);
    let c = pg().await;
    let names_in = |table: String| {
        let c = &c;
        async move {
            pg_rows(
                c,
                &format!("SELECT id::text, name FROM {table} ORDER BY id"),
                &[],
            )
            .await
        }
    };
    for _ in 0..2 {
        let started = Instant::now();
        let err = run_fails(&cfg);
        assert!(err.contains("stream sequence 2"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            names_in(n.table.clone()).await,
            vec![vec![Some("1".into()), Some("n1".into())]],
            "nothing after the refused message is written"
        );
    }
    // A smaller batch than the messages handed back: they still come first, all of them.
    let started = Instant::now();
    let err = run_fails(&write_config(
        &text.replace("batch_size: 10", "batch_size: 2"),
    ));
    assert!(err.contains("stream sequence 2"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(names_in(n.table.clone()).await.len(), 1, "nothing after it");
    let (fixed, fixed_table) = fixed_config(&text, &n.table, ("decimal(10,2)", "decimal(10,3)"));
    // Three read; key 5's two values in one batch are one write, the newer.
    assert_eq!(run_ok(&write_config(&fixed), &["apply"]), (3, 2));
    assert_eq!(
        names_in(fixed_table.clone()).await,
        vec![
            vec![Some("5".into()), Some("NEW".into())],
            vec![Some("6".into()), Some("n6".into())],
        ],
        "the newer value of key 5 is written last"
    );
    assert_eq!(consumer_state(&js, &n.stream, &n.durable).await, (4, 0, 0));
    c.batch_execute(&format!("DROP TABLE {}; DROP TABLE {fixed_table}", n.table))
        .await
        .unwrap();
    js.delete_stream(&n.stream).await.unwrap();
}

/// A durable consumer created with a smaller `batch_size` lets no more messages be
/// unacknowledged: a larger batch takes that many at a time and still drains the stream.
#[tokio::test]
async fn a_larger_batch_than_the_consumer_allows_still_drains_the_stream() {
    let n = names("nats_src_grow");
    let js = stream(&n.stream, &n.subject).await;
    let text = config(&n.subject, &n.stream, &n.durable, "pg", &n.table, "");
    // The first run creates the consumer (max_ack_pending 3) and finds nothing.
    assert_eq!(run_ok(&write_config(&text), &["apply"]), (0, 0));
    publish(&js, &n.subject, &(1..=10).map(message).collect::<Vec<_>>()).await;
    let bigger = write_config(&text.replace("batch_size: 3", "batch_size: 10"));
    let o = synctool(&bigger, &["apply", "--format", "json"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("fewer than batch_size (10): batches of 3"),
        "{err}"
    );
    let v: J = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["pipelines"][0]["rows_read"], 10, "{v}");
    assert_eq!(consumer_state(&js, &n.stream, &n.durable).await, (10, 0, 0));
    let c = pg().await;
    c.batch_execute(&format!("DROP TABLE {}", n.table))
        .await
        .unwrap();
    js.delete_stream(&n.stream).await.unwrap();
}

#[tokio::test]
async fn a_nats_batch_the_sink_refused_is_redelivered_to_the_next_run() {
    let n = names("nats_src_refused");
    let js = stream(&n.stream, &n.subject).await;
    publish(&js, &n.subject, &(1..=7).map(message).collect::<Vec<_>>()).await;
    let c = pg().await;
    c.batch_execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount numeric(10,2), at timestamp,
           ok boolean, big bigint, CONSTRAINT no_five CHECK (id <> 5))",
        t = n.table
    ))
    .await
    .unwrap();
    let cfg = write_config(&config(
        &n.subject, &n.stream, &n.durable, "pg", &n.table, "",
    ));
    let err = run_fails(&cfg);
    assert!(err.contains("no_five"), "{err}");
    // Batch 1-3 committed and acknowledged; batch 4-6 rolled back and handed back (still
    // pending for the consumer, not acknowledged).
    let ids = pg_rows(&c, &format!("SELECT count(*)::text FROM {}", n.table), &[]).await;
    assert_eq!(ids, vec![vec![Some("3".into())]]);
    assert_eq!(consumer_state(&js, &n.stream, &n.durable).await.0, 3);

    c.batch_execute(&format!("ALTER TABLE {} DROP CONSTRAINT no_five", n.table))
        .await
        .unwrap();
    // Handed back, the batch comes at once (not after the 30 s ack wait), then message 7.
    let started = Instant::now();
    assert_eq!(run_ok(&cfg, &["apply"]), (4, 4));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let rows = pg_rows(&c, &pg_select(&n.table), &[]).await;
    let want: Vec<Row> = (1..=7).map(|i| expected(i, ("true", "false"))).collect();
    assert_eq!(rows, want);
    assert_eq!(consumer_state(&js, &n.stream, &n.durable).await, (7, 0, 0));
    c.batch_execute(&format!("DROP TABLE {}", n.table))
        .await
        .unwrap();
    js.delete_stream(&n.stream).await.unwrap();
}

#[tokio::test]
async fn a_killed_nats_run_leaves_its_uncommitted_batch_for_the_next_run() {
    let n = names("nats_src_kill");
    let js = stream(&n.stream, &n.subject).await;
    publish(&js, &n.subject, &(1..=7).map(message).collect::<Vec<_>>()).await;
    // The durable consumer exists with a short ack wait, so that a killed run's
    // unacknowledged messages come back within the test (synctool uses it as it is).
    js.get_stream(&n.stream)
        .await
        .unwrap()
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(n.durable.clone()),
            filter_subject: n.subject.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(2),
            // One batch in flight, as synctool creates its consumers.
            max_ack_pending: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let c = pg().await;
    c.batch_execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount numeric(10,2), at timestamp,
           ok boolean, big bigint);
         INSERT INTO {t} (id, name) VALUES (5, 'old')",
        t = n.table
    ))
    .await
    .unwrap();
    // Another session holds row 5: the second batch (4-6) waits on it, uncommitted.
    let (locker, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .expect("PostgreSQL on 127.0.0.1:5432");
    tokio::spawn(conn);
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT * FROM {} WHERE id = 5 FOR UPDATE",
            n.table
        ))
        .await
        .unwrap();

    let cfg = write_config(&config(
        &n.subject, &n.stream, &n.durable, "pg", &n.table, "",
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_synctool"))
        .arg("-c")
        .arg(&cfg)
        .arg("apply")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run synctool");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // First batch acknowledged, second delivered and waiting on the lock.
        let (floor, unacked, _) = consumer_state(&js, &n.stream, &n.durable).await;
        if (floor, unacked) == (3, 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not reach the locked row"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    locker.batch_execute("ROLLBACK").await.unwrap();
    let rows = pg_rows(
        &c,
        &format!(
            "SELECT id::text, name FROM {} WHERE id >= 4 ORDER BY id",
            n.table
        ),
        &[],
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![Some("5".into()), Some("old".into())]],
        "nothing of batch 4-6 committed"
    );

    // Newer messages about the killed batch's keys arrive; the next run, started at once,
    // waits for the ack wait, writes the killed batch first and the newer values last.
    let newer: Vec<J> = (4..=6)
        .map(|i| {
            let mut m = message(i);
            m["name"] = json!(format!("newer {i}"));
            m
        })
        .collect();
    publish(&js, &n.subject, &newer).await;
    assert_eq!(run_ok(&cfg, &["apply"]), (7, 7));
    let rows = pg_rows(&c, &pg_select(&n.table), &[]).await;
    let want: Vec<Row> = (1..=7)
        .map(|i| {
            let mut r = expected(i, ("true", "false"));
            if (4..=6).contains(&i) {
                r[1] = Some(format!("newer {i}"));
            }
            r
        })
        .collect();
    assert_eq!(rows, want, "the newest message of each key is written last");
    assert_eq!(consumer_state(&js, &n.stream, &n.durable).await, (10, 0, 0));
    c.batch_execute(&format!("DROP TABLE {}", n.table))
        .await
        .unwrap();
    js.delete_stream(&n.stream).await.unwrap();
}

#[tokio::test]
async fn a_nats_batch_larger_than_a_thousand_messages_is_taken_whole() {
    let n = names("nats_src_big");
    let js = stream(&n.stream, &n.subject).await;
    let msgs: Vec<J> = (1..=1500)
        .map(|i| json!({"id": i % 700, "name": format!("v{i}")}))
        .collect();
    for chunk in msgs.chunks(250) {
        let acks: Vec<_> = futures_util::future::join_all(
            chunk
                .iter()
                .map(|m| js.publish(n.subject.clone(), serde_json::to_vec(m).unwrap().into())),
        )
        .await;
        for a in acks {
            a.expect("publish").await.expect("publish ack");
        }
    }
    let cfg = write_config(
        &config(&n.subject, &n.stream, &n.durable, "pg", &n.table, "")
            .replace("batch_size: 3", "batch_size: 1200"),
    );
    // The server's default of 1,000 unacknowledged messages cut a pull of 1,200 short, and
    // the run stopped after one short batch.
    let (read, _) = run_ok(&cfg, &["apply"]);
    assert_eq!(read, 1500);
    let c = pg().await;
    let rows = pg_rows(
        &c,
        &format!(
            "SELECT count(*)::text, max(name) FILTER (WHERE id = 1) FROM {}",
            n.table
        ),
        &[],
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![Some("700".into()), Some("v1401".into())]],
        "the last message of each key wins"
    );
    assert_eq!(
        consumer_state(&js, &n.stream, &n.durable).await,
        (1500, 0, 0)
    );
    c.batch_execute(&format!("DROP TABLE {}", n.table))
        .await
        .unwrap();
    js.delete_stream(&n.stream).await.unwrap();
}

#[tokio::test]
async fn a_nats_message_without_its_key_is_named_by_its_sequence() {
    let n = names("nats_src_nokey");
    let js = stream(&n.stream, &n.subject).await;
    let mut msgs: Vec<J> = (1..=2).map(message).collect();
    msgs[1]["id"] = J::Null; // stream sequence 2
    publish(&js, &n.subject, &msgs).await;
    let cfg = write_config(&config(
        &n.subject, &n.stream, &n.durable, "pg", &n.table, "",
    ));
    let err = run_fails(&cfg);
    assert!(
        err.contains("stream sequence 2")
            && err.contains("column `id`: the message has no value for this key field"),
        "{err}"
    );
    assert_eq!(consumer_state(&js, &n.stream, &n.durable).await.0, 1);
    let c = pg().await;
    c.batch_execute(&format!("DROP TABLE IF EXISTS {}", n.table))
        .await
        .unwrap();
    js.delete_stream(&n.stream).await.unwrap();
}

/// A durable consumer made for one subject is not read under another: the run (and the
/// plan) stop with an error naming both, instead of reading the old subject and skipping
/// the configured one.
#[tokio::test]
async fn a_durable_consumer_of_another_subject_is_refused() {
    let n = names("nats_subj");
    let js = stream(&n.stream, &format!("{}.*", n.subject)).await;
    let (old, new) = (format!("{}.old", n.subject), format!("{}.new", n.subject));
    publish(&js, &old, &[message(1)]).await;
    let cfg = write_config(&config(&old, &n.stream, &n.durable, "pg", &n.table, ""));
    assert_eq!(run_ok(&cfg, &["apply"]), (1, 1));
    publish(&js, &new, &[message(2)]).await;
    let cfg = write_config(&config(&new, &n.stream, &n.durable, "pg", &n.table, ""));
    for args in [&["apply"][..], &["plan"][..]] {
        let o = synctool(&cfg, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "the durable consumer `{}` on stream `{}` reads subject `{old}`, not the configured `{new}`",
                n.durable, n.stream
            )),
            "{err}"
        );
    }
    let c = pg().await;
    c.batch_execute(&format!("DROP TABLE {}", n.table))
        .await
        .unwrap();
    js.delete_stream(&n.stream).await.unwrap();
}

#[tokio::test]
async fn an_existing_nats_consumer_that_could_lose_messages_is_refused_before_consuming() {
    use jetstream::consumer::{push, AckPolicy};
    let n = names("nats_src_policy");
    let js = stream(&n.stream, &n.subject).await;
    publish(&js, &n.subject, &(1..=7).map(message).collect::<Vec<_>>()).await;
    let s = js.get_stream(&n.stream).await.unwrap();
    let pull_config = |ack_policy, max_deliver, headers_only| jetstream::consumer::pull::Config {
        durable_name: Some(n.durable.clone()),
        filter_subject: n.subject.clone(),
        ack_policy,
        max_deliver,
        headers_only,
        max_ack_pending: 3,
        ..Default::default()
    };
    let cfg = write_config(&config(
        &n.subject, &n.stream, &n.durable, "pg", &n.table, "",
    ));
    let cases: Vec<(&str, &[&str])> = vec![
        ("ack none", &["ack policy `none`", "ack_policy explicit"]),
        ("ack all", &["ack policy `all`", "ack_policy explicit"]),
        ("max_deliver", &["max_deliver 2"]),
        ("headers only", &["headers only"]),
        ("push", &["push consumer", "pull consumer"]),
    ];
    for (case, says) in cases {
        match case {
            "ack none" => s
                .create_consumer(pull_config(AckPolicy::None, -1, false))
                .await
                .map(drop),
            "ack all" => s
                .create_consumer(pull_config(AckPolicy::All, -1, false))
                .await
                .map(drop),
            "max_deliver" => s
                .create_consumer(pull_config(AckPolicy::Explicit, 2, false))
                .await
                .map(drop),
            "headers only" => s
                .create_consumer(pull_config(AckPolicy::Explicit, -1, true))
                .await
                .map(drop),
            _ => s
                .create_consumer(push::Config {
                    durable_name: Some(n.durable.clone()),
                    deliver_subject: format!("{}.deliver", n.subject),
                    filter_subject: n.subject.clone(),
                    ack_policy: AckPolicy::Explicit,
                    ..Default::default()
                })
                .await
                .map(drop),
        }
        .unwrap_or_else(|e| panic!("{case}: {e}"));
        for cmd in ["apply", "plan"] {
            let o = synctool(&cfg, &[cmd]);
            let err = String::from_utf8_lossy(&o.stderr).to_string();
            assert_eq!(
                o.status.code(),
                Some(1),
                "{case}: {cmd} should fail:\n{err}"
            );
            for want in [n.stream.as_str(), n.durable.as_str()].iter().chain(says) {
                assert!(err.contains(want), "{case}: {cmd} names `{want}`:\n{err}");
            }
        }
        // Nothing was delivered, acknowledged or written.
        let info = s.consumer_info(&n.durable).await.unwrap();
        assert_eq!(
            (info.delivered.stream_sequence, info.num_pending),
            (0, 7),
            "{case}: nothing consumed"
        );
        s.delete_consumer(&n.durable).await.unwrap();
    }
    let c = pg().await;
    let table: Vec<Row> = pg_rows(
        &c,
        "SELECT table_name::text FROM information_schema.tables WHERE table_name = $1",
        &[&n.table],
    )
    .await;
    assert!(table.is_empty(), "no sink table: nothing was written");

    // A consumer synctool creates acknowledges explicitly; the same data goes through it.
    assert_eq!(run_ok(&cfg, &["apply"]), (7, 7));
    let info = s.consumer_info(&n.durable).await.unwrap();
    assert_eq!(info.config.ack_policy, AckPolicy::Explicit);
    c.batch_execute(&format!("DROP TABLE {}", n.table))
        .await
        .unwrap();
    js.delete_stream(&n.stream).await.unwrap();
}

#[tokio::test]
async fn a_nats_sink_rerun_and_a_killed_run_rerun_publish_no_row_twice() {
    let n = names("nats_sink_rerun");
    let js = stream(&n.stream, &n.subject).await;
    let c = pg().await;
    c.batch_execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, name text);
         INSERT INTO {t} SELECT i, 'n' || i FROM generate_series(1, 1200) i",
        t = n.table
    ))
    .await
    .unwrap();
    let text = format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, port: 5432, username: postgres, database: test}}
  - {{name: bus, type: nats, servers: ["{NATS}"], subject: {subject}, stream: {stream}}}
pipelines:
  - name: to_bus
    source:
      datastore: pg
      table: {table}
      batch_size: 500
    sink:
      datastore: bus
      unique_key: [id]
      fields:
        - {{column: id, dtype: int, source_column: id}}
        - {{column: name, dtype: str, source_column: name}}
"#,
        subject = n.subject,
        stream = n.stream,
        table = n.table,
    );
    let cfg = write_config(&text);
    let messages = || async {
        let mut s = js.get_stream(&n.stream).await.unwrap();
        s.info().await.unwrap().state.messages
    };

    // A run killed after its first batch was published: simulated by a run over the
    // first 500 rows only (the same pipeline, hence the same message ids).
    let partial = text.replace(
        &format!("table: {}\n", n.table),
        &format!(
            "table: {}\n      filters: [{{column: id, operator: '<=', value: 500}}]\n",
            n.table
        ),
    );
    assert_ne!(partial, text);
    assert_eq!(run_ok(&write_config(&partial), &["apply"]), (500, 500));
    assert_eq!(messages().await, 500);
    // The rerun publishes the rest only.
    assert_eq!(run_ok(&cfg, &["apply"]), (1200, 700));
    assert_eq!(messages().await, 1200);
    // On an unchanged source, a rerun writes nothing.
    assert_eq!(run_ok(&cfg, &["apply"]), (1200, 0));
    assert_eq!(messages().await, 1200);
    let o = synctool(&cfg, &["-v", "apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("1200 of 1200 message(s) were already in the stream"),
        "the run says what the stream deduplicated:\n{err}"
    );
    assert_eq!(messages().await, 1200);
    // A changed row is a new message.
    c.batch_execute(&format!(
        "UPDATE {} SET name = 'changed' WHERE id = 7",
        n.table
    ))
    .await
    .unwrap();
    assert_eq!(run_ok(&cfg, &["apply"]), (1200, 1));
    assert_eq!(messages().await, 1201);
    let s = js.get_stream(&n.stream).await.unwrap();
    let last = s.get_raw_message(1201).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<J>(&last.payload).unwrap(),
        json!({"id": 7, "name": "changed"})
    );
    c.batch_execute(&format!("DROP TABLE {}", n.table))
        .await
        .unwrap();
    js.delete_stream(&n.stream).await.unwrap();
}
