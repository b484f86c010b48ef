//! TLS against the real servers. `scripts/services.sh` gives each one a certificate for
//! 127.0.0.1 signed by a test CA (`/etc/synctool-test-tls/ca.pem`, or the directory in
//! `SYNCTOOL_TEST_TLS_DIR`): PostgreSQL and MariaDB negotiate TLS on their usual ports,
//! ClickHouse serves HTTPS on 8443 beside HTTP on 8123.

use crate::support::write_config;
use std::path::PathBuf;
use std::process::Command;

use synctool::config::TlsMode;
use synctool::runtime::connect::tls::ClientCert;
use synctool::runtime::{Conn, ConnSettings, RuntimeError, Stmt};
use synctool::sql::DialectKind;
use synctool::types::Dtype;

use crate::support::{self, START_HINT};

const ALL: [DialectKind; 3] = [
    DialectKind::Postgres,
    DialectKind::Mysql,
    DialectKind::Clickhouse,
];

/// The test CA's certificate; a missing file fails the test.
fn ca() -> PathBuf {
    let dir =
        std::env::var("SYNCTOOL_TEST_TLS_DIR").unwrap_or_else(|_| "/etc/synctool-test-tls".into());
    let p = PathBuf::from(dir).join("ca.pem");
    assert!(
        p.is_file(),
        "the test CA {} is missing: {START_HINT}",
        p.display()
    );
    p
}

/// The connector tests' settings for `d`, with `tls` and `root_cert`; ClickHouse on its
/// HTTPS port when `tls` requires encryption.
fn settings(d: DialectKind, tls: TlsMode, root_cert: Option<PathBuf>) -> ConnSettings {
    let mut s = crate::connectors::settings(d);
    s.name = format!("{}_tls", d.name());
    if d == DialectKind::Clickhouse && tls.required() {
        s.port = 8443;
    }
    s.tls = tls;
    s.root_cert = root_cert;
    s
}

async fn connect(s: &ConnSettings) -> Result<Conn, RuntimeError> {
    Conn::connect(s, &[]).await
}

/// Whether the server sees this session as encrypted. ClickHouse over HTTPS answers on a
/// port that speaks nothing but TLS, so a query that succeeds there was encrypted.
async fn encrypted(c: &mut Conn, d: DialectKind) -> bool {
    let (sql, out) = match d {
        DialectKind::Postgres => (
            "SELECT CASE WHEN ssl THEN 'yes' ELSE 'no' END FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            vec![Dtype::Str],
        ),
        DialectKind::Mysql => (
            "SELECT CASE WHEN VARIABLE_VALUE <> '' THEN 'yes' ELSE 'no' END FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_VERSION'",
            vec![Dtype::Str],
        ),
        DialectKind::Clickhouse => ("SELECT 'yes'", vec![Dtype::Str]),
    };
    let st = Stmt {
        step: "test",
        sql,
        param_names: &[],
        param_types: &[],
        columns: &[],
        key: &[],
    };
    let rows = c
        .query(st, &[], &out)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(rows.len(), 1, "{sql}");
    rows[0][0] == synctool::expr::Value::Str("yes".into())
}

#[tokio::test]
async fn verify_full_and_verify_ca_with_the_test_ca_connect_encrypted() {
    for d in ALL {
        for mode in [TlsMode::VerifyFull, TlsMode::VerifyCa] {
            let s = settings(d, mode, Some(ca()));
            let mut c = connect(&s).await.unwrap_or_else(|e| {
                panic!(
                    "{} with sslmode {}: {e}; {START_HINT}",
                    d.name(),
                    mode.name()
                )
            });
            assert!(encrypted(&mut c, d).await, "{} {}", d.name(), mode.name());
        }
    }
}

#[tokio::test]
async fn require_connects_encrypted_without_verifying_the_certificate() {
    for d in ALL {
        let s = settings(d, TlsMode::Require, None);
        let mut c = connect(&s)
            .await
            .unwrap_or_else(|e| panic!("{} with sslmode require: {e}; {START_HINT}", d.name()));
        assert!(encrypted(&mut c, d).await, "{}", d.name());
    }
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused_with_a_hint() {
    for d in ALL {
        for mode in [TlsMode::VerifyFull, TlsMode::VerifyCa] {
            let s = settings(d, mode, None);
            match connect(&s).await {
                Ok(_) => panic!(
                    "{} accepted a certificate of an unknown CA with sslmode {}",
                    d.name(),
                    mode.name()
                ),
                Err(e @ RuntimeError::Connect { .. }) => {
                    let m = e.to_string();
                    assert!(m.contains(&s.name), "{m}");
                    assert!(m.contains("sslrootcert"), "no hint in: {m}");
                }
                Err(other) => panic!("expected a connect error, got {other}"),
            }
        }
    }
}

#[tokio::test]
async fn prefer_encrypts_when_the_server_offers_tls_and_disable_does_not() {
    for d in [DialectKind::Postgres, DialectKind::Mysql] {
        let mut c = connect(&settings(d, TlsMode::Prefer, None))
            .await
            .unwrap_or_else(|e| panic!("{} prefer: {e}; {START_HINT}", d.name()));
        assert!(encrypted(&mut c, d).await, "{} prefer", d.name());
        let mut c = connect(&settings(d, TlsMode::Disable, None))
            .await
            .unwrap_or_else(|e| panic!("{} disable: {e}; {START_HINT}", d.name()));
        assert!(!encrypted(&mut c, d).await, "{} disable", d.name());
    }
}

#[tokio::test]
async fn clickhouse_https_against_a_plain_http_port_fails_instead_of_falling_back() {
    let mut s = settings(DialectKind::Clickhouse, TlsMode::Require, None);
    s.port = 8123;
    match connect(&s).await {
        Ok(_) => panic!("sslmode require spoke to the plain HTTP port"),
        Err(e) => assert!(matches!(e, RuntimeError::Connect { .. }), "{e}"),
    }
}

/// The test client certificate (CN synctool_cert) and its PKCS#8 key.
fn client_cert() -> ClientCert {
    let dir = ca().parent().expect("the TLS directory").to_path_buf();
    ClientCert {
        cert: dir.join("client.pem"),
        key: dir.join("client.key"),
    }
}

async fn current_user(c: &mut Conn, d: DialectKind) -> String {
    let sql = match d {
        DialectKind::Mysql => "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)",
        _ => "SELECT current_user",
    };
    let stmt = Stmt {
        step: "test",
        sql,
        param_names: &[],
        param_types: &[],
        columns: &[],
        key: &[],
    };
    let rows = c
        .query(stmt, &[], &[Dtype::Str])
        .await
        .expect("current user");
    rows[0][0].to_text()
}

/// `sslcert`/`sslkey`: PostgreSQL's role synctool_cert (hba `cert`) and MariaDB's user
/// synctool_x509 (`REQUIRE X509`) log in with the test client certificate and not without
/// it. The key is PKCS#8, which MySQL connections convert for their driver. ClickHouse
/// 18.16 cannot ask for a client certificate; there a configured one must not get in the way.
#[tokio::test]
async fn client_certificates_log_in_where_the_server_requires_them() {
    for (d, user) in [
        (DialectKind::Postgres, "synctool_cert"),
        (DialectKind::Mysql, "synctool_x509"),
    ] {
        let mut s = settings(d, TlsMode::VerifyFull, Some(ca()));
        s.username = Some(user.into());
        let refused = connect(&s)
            .await
            .expect_err("no login without the client certificate");
        assert!(
            matches!(refused, RuntimeError::Connect { .. }),
            "{}: {refused}",
            d.name()
        );
        s.client_cert = Some(client_cert());
        let mut c = connect(&s)
            .await
            .unwrap_or_else(|e| panic!("{}: login with the client certificate: {e}", d.name()));
        assert_eq!(current_user(&mut c, d).await, user, "{}", d.name());
        assert!(encrypted(&mut c, d).await, "{}", d.name());
    }
    let mut s = settings(DialectKind::Clickhouse, TlsMode::VerifyFull, Some(ca()));
    s.client_cert = Some(client_cert());
    let mut c = connect(&s)
        .await
        .expect("ClickHouse over HTTPS with a client certificate");
    assert!(encrypted(&mut c, DialectKind::Clickhouse).await);

    // A key file that is not there is named.
    let mut s = settings(DialectKind::Postgres, TlsMode::VerifyFull, Some(ca()));
    s.client_cert = Some(ClientCert {
        cert: client_cert().cert,
        key: "/nonexistent/client.key".into(),
    });
    let e = connect(&s).await.expect_err("no key");
    assert!(
        e.to_string()
            .contains("cannot read sslkey /nonexistent/client.key"),
        "{e}"
    );
}

/// The config keys end to end: PostgreSQL with `sslmode: verify-full`, MariaDB with
/// `tls: true`, ClickHouse with `sslmode: verify-ca`, each trusting the test CA through
/// `sslrootcert`; a sync into both sinks, then `plan --exit-code` finds no drift.
#[tokio::test]
async fn apply_and_plan_over_verified_tls_on_every_database() {
    let src = support::unique("tls_src");
    let pg = support::pg().await;
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, name text); \
         INSERT INTO {src} SELECT g, 'name ' || g FROM generate_series(1, 500) g;"
    ))
    .await
    .unwrap_or_else(|e| panic!("PostgreSQL setup: {e}"));
    let ca = ca();
    let ca = ca.display();
    let config = format!(
        r#"
datastores:
  - {{name: pg, type: postgres, host: 127.0.0.1, username: postgres, database: test, sslmode: verify-full, sslrootcert: "{ca}"}}
  - {{name: my, type: mysql, host: 127.0.0.1, username: root, database: test, tls: true, sslrootcert: "{ca}"}}
  - {{name: ch, type: clickhouse, host: 127.0.0.1, username: default, database: default, sslmode: verify-ca, sslrootcert: "{ca}"}}
pipelines:
  - name: to_my
    source: &source
      datastore: pg
      table: {src}
      fields: [{{column: id, dtype: int}}, {{column: name, dtype: str}}]
    sink: {{datastore: my, table: {src}, merge_strategy: {{strategy: upsert, allow_delete: true}}, unique_key: [id]}}
    reconciliation: [{{name: r, strategy: md5sum_hash, partition_column: id, initial_partition_interval: 100}}]
  - name: to_ch
    source: *source
    sink: {{datastore: ch, table: {src}, merge_strategy: {{strategy: upsert}}, unique_key: [id]}}
"#
    );
    let cfg = write_config(&config);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_synctool"))
            .arg("-c")
            .arg(&cfg)
            .args(args)
            .output()
            .expect("run synctool")
    };
    let o = run(&["apply", "--full"]);
    assert!(
        o.status.success(),
        "apply over TLS failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&["plan", "-p", "to_my", "-r", "r", "--exit-code"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "plan over TLS:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let mut my = support::mysql().await;
    let n = support::mysql_rows(
        &mut my,
        &format!("SELECT count(*) FROM {src}"),
        mysql_async::Params::Empty,
    )
    .await;
    assert_eq!(n, vec![vec![Some("500".to_string())]]);
    let ch = support::clickhouse().await;
    assert_eq!(
        ch.exec(&format!("SELECT count() FROM {src} FINAL"))
            .await
            .trim(),
        "500"
    );
    support::mysql_exec(&mut my, &format!("DROP TABLE {src}")).await;
    ch.exec(&format!("DROP TABLE {src}")).await;
    pg.batch_execute(&format!("DROP TABLE {src}"))
        .await
        .unwrap();
}
