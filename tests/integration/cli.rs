//! The command line: exit codes, and diagnostics that name the YAML path and line:column,
//! show the source line, and never show a secret.

use std::io::Write;
use std::process::{Command, Output};

fn run(args: &[&str], config: &str) -> Output {
    run_env(args, config, &[])
}

fn run_env(args: &[&str], config: &str, env: &[(&str, &str)]) -> Output {
    let mut f = tempfile_in_target("cfg");
    f.1.write_all(config.as_bytes()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synctool"));
    cmd.args(args)
        .arg("-c")
        .arg(&f.0)
        .env_remove("SYNCTOOL_TEST_UNSET")
        .envs(env.iter().copied());
    cmd.output().expect("run synctool")
}

fn tempfile_in_target(tag: &str) -> (std::path::PathBuf, std::fs::File) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let p = dir.join(format!(
        "{tag}-{}-{}.yaml",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let f = std::fs::File::create(&p).unwrap();
    (p, f)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const GOOD: &str = r#"
datastores:
  - {name: a, type: postgres, host: 127.0.0.1, database: test, password: hunter2secret}
  - {name: b, type: mysql, host: 127.0.0.1, database: test}
pipelines:
  - name: p
    source:
      datastore: a
      table: t
      fields:
        - {column: id, dtype: int}
        - {column: name, dtype: str}
    sink:
      datastore: b
      table: t2
      unique_key: [id]
      fields:
        - {column: id, source_column: id}
        - {column: name, source_column: name}
"#;

/// Assert exit code 2 and that stderr contains every needle.
fn invalid(config: &str, needles: &[&str]) -> String {
    let o = run(&["validate"], config);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "expected exit 2, stderr:\n{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn valid_config_validates_and_compiles() {
    let o = run(&["validate"], GOOD);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok (1 pipeline: p)"));
    let a = run(&["compile", "--format", "json"], GOOD);
    let b = run(&["compile", "--format", "json"], GOOD);
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert_eq!(a.stdout, b.stdout, "compile output must be deterministic");
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).expect("json");
    assert_eq!(v["pipelines"][0]["source"]["dialect"], "postgres");
    assert_eq!(v["pipelines"][0]["sink"]["dialect"], "mysql");
    let all = String::from_utf8_lossy(&a.stdout);
    assert!(
        !all.contains("hunter2secret"),
        "a password leaked into the plan"
    );
}

#[test]
fn a_config_saved_with_a_byte_order_mark_is_read() {
    let o = run(&["validate"], &format!("\u{feff}{GOOD}"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Positions still count from the first character after the mark.
    invalid(
        "\u{feff}datastores:\n  - name: a\n    type: [postgres\n",
        &["malformed YAML", ":4:1"],
    );
}

#[test]
fn malformed_yaml_is_located() {
    invalid(
        "datastores:\n  - name: a\n    type: [postgres\n",
        &["malformed YAML", ":4:1", "-->"],
    );
}

#[test]
fn unknown_key_gets_a_suggestion() {
    let cfg = GOOD.replace("      table: t\n", "      tabel: t\n");
    invalid(
        &cfg,
        &[
            "unknown key `tabel`",
            "pipelines[0].source.tabel",
            "did you mean `table`?",
            "tabel: t",
        ],
    );
}

#[test]
fn json_logs_keep_config_errors_one_json_object_per_line() {
    let cfg = GOOD.replace("      table: t\n", "      tabel: t\n");
    let o = run(&["--log-format", "json", "validate"], &cfg);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let event = events
        .iter()
        .find(|e| e["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error event: {err}"));
    // One event per diagnostic, its place in fields of their own.
    let f = &event["fields"];
    assert_eq!(f["message"], "unknown key `tabel` in the source", "{err}");
    assert_eq!(f["path"], "pipelines[0].source.tabel", "{err}");
    assert_eq!(f["help"], "did you mean `table`?", "{err}");
    let line = GOOD.lines().position(|l| l == "      table: t").unwrap() + 1;
    assert_eq!(
        (f["line"].as_u64(), f["column"].as_u64()),
        (Some(line as u64), Some(7))
    );
    assert!(
        f["file"].as_str().is_some_and(|n| n.ends_with(".yaml")),
        "{err}"
    );
    assert!(events.last().unwrap()["fields"]["message"]
        .as_str()
        .is_some_and(|m| m.ends_with(": 1 error")));
}

/// A usage error clap finds is a JSON event too when JSON logs were asked for; `--help`
/// still prints its text.
#[test]
fn json_logs_keep_usage_errors_json() {
    for args in [
        &["--log-format", "json", "aply"][..],
        &["--log-format=json", "plan", "--exit-cod"][..],
    ] {
        let o = run(args, GOOD);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        let events: Vec<serde_json::Value> = err
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(events.len(), 1, "{err}");
        assert_eq!(events[0]["level"], "ERROR");
        assert!(events[0]["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unrecognized subcommand") || m.contains("--exit-cod")));
    }
    let o = run(&["--log-format", "json", "--help"], GOOD);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Usage:"));
    // Without JSON logs, clap's own text.
    let o = run(&["aply"], GOOD);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
}

#[test]
fn a_repeated_key_is_one_error_showing_its_value() {
    let cfg = GOOD.replace("      table: t\n", "      table: t\n      table: t\n");
    assert!(cfg != GOOD, "the config has `      table: t`");
    let err = invalid(&cfg, &["duplicate key `table`", "given again here"]);
    assert!(err.contains("1 error"), "{err}");
    assert!(!err.contains("unknown key"), "{err}");
    // `unique_key` and `key_template` name keys, not secrets: their values are shown.
    let cfg = GOOD.replace(
        "      table: t\n",
        "      table: t\n      unique_key: [x]\n      unique_key: [x]\n",
    );
    let err = stderr(&run(&["validate"], &cfg));
    assert!(err.contains("unique_key: [x]"), "{err}");
}

#[test]
fn unknown_datastore_reference() {
    let cfg = GOOD.replace("      datastore: b\n", "      datastore: bb\n");
    invalid(
        &cfg,
        &[
            "unknown datastore `bb`",
            "pipelines[0].sink.datastore",
            "did you mean `b`?",
        ],
    );
}

#[test]
fn type_error_in_an_expression_points_at_it() {
    let cfg = GOOD.replace(
        "        - {column: name, source_column: name}\n",
        "        - {column: name, source_column: name}\n        - {column: big, dtype: int, source_column: 'lambda r: 1 if r[\"name\"] > 1000 else 0'}\n",
    );
    let err = invalid(
        &cfg,
        &["pipelines[0].sink.fields[2].source_column", "str", "int"],
    );
    assert!(err.contains("^"), "{err}");
}

/// A secret whose variable is not set is needed only by a command that connects to its
/// store: `validate` and `compile` (a code review's CI, without the production secrets) warn
/// and succeed; `plan` and `apply` of a pipeline using the store stop before connecting
/// (exit 2, naming the variable and the YAML path); a pipeline that does not use it runs.
#[test]
fn unset_secret_is_an_error_only_where_its_store_is_used() {
    let cfg = GOOD.replace(
        "password: hunter2secret",
        "password: '${SYNCTOOL_TEST_UNSET}'",
    );
    let o = run(&["validate"], &cfg);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: environment variable `SYNCTOOL_TEST_UNSET` is not set")
            && err.contains("datastores[0].password"),
        "{err}"
    );
    let o = run(&["compile", "--format", "json"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("compile json");
    for cmd in [&["plan"][..], &["apply", "--full"][..]] {
        let o = run(cmd, &cfg);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(
            err.contains("error: environment variable `SYNCTOOL_TEST_UNSET` is not set")
                && err.contains("datastores[0].password")
                && !err.contains("step"),
            "{cmd:?}: {err}"
        );
    }
    // A second pipeline, between MariaDB tables only: it does not need datastore `a`.
    let cfg = cfg.replace(
        "type: mysql, host: 127.0.0.1,",
        "type: mysql, host: 127.0.0.1, username: root,",
    );
    let two = format!(
        "{cfg}  - name: q\n    source: {{datastore: b, table: synctool_no_such_table, fields: [{{column: id, dtype: int}}]}}\n    sink: {{datastore: b, table: t3, unique_key: [id]}}\n"
    );
    let o = run(&["plan", "-p", "q"], &two);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        !err.contains("is not set") && err.contains("synctool_no_such_table"),
        "{err}"
    );
    // A variable that is not a secret (the database name shapes the plan) stays an error.
    invalid(
        &GOOD.replace(
            "database: test, password",
            "database: '${SYNCTOOL_TEST_UNSET}', password",
        ),
        &[
            "SYNCTOOL_TEST_UNSET",
            "is not set",
            "datastores[0].database",
        ],
    );
}

/// A value from the environment that does not fit its key is shown as it came.
#[test]
fn an_expanded_value_that_does_not_fit_is_shown() {
    let cfg = GOOD.replace(
        "host: 127.0.0.1, database: test,",
        "host: 127.0.0.1, port: '${SYNCTOOL_TEST_PORT:-5432}', database: test,",
    );
    let o = run_env(&["validate"], &cfg, &[("SYNCTOOL_TEST_PORT", "54x32")]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("`port` must be an integer, found the text `54x32`")
            && err.contains("datastores[0].port"),
        "{err}"
    );
}

#[test]
fn unknown_template_variable() {
    let cfg = GOOD.replace(
        "        - {column: name, source_column: name}\n",
        "        - {column: name, source_column: 'TMPL({{ nme }}!)'}\n",
    );
    invalid(&cfg, &["nme", "pipelines[0].sink.fields[1].source_column"]);
}

#[test]
fn secrets_are_never_shown() {
    // An error on the password's own line: the line is shown, the value is not.
    let cfg = GOOD.replace(
        "password: hunter2secret}",
        "password: hunter2secret, colour: red}",
    );
    let err = invalid(&cfg, &["unknown key `colour`"]);
    assert!(!err.contains("hunter2secret"), "password shown:\n{err}");
    // A misspelt or repeated password key: its value is not shown either.
    for (typo, needle) in [
        ("pasword", "did you mean `password`?"),
        ("pw", "unknown key `pw`"),
        ("hots", "did you mean `host`?"),
        (
            "password: hunter2secret, password",
            "duplicate key `password`",
        ),
    ] {
        let cfg = GOOD.replace(
            "password: hunter2secret}",
            &format!("{typo}: hunter2secret}}"),
        );
        let err = invalid(&cfg, &[needle]);
        assert!(
            !err.contains("hunter2secret"),
            "{typo}: password shown:\n{err}"
        );
    }
    // Credentials in a URL given as `host` are refused, and not shown.
    let cfg = GOOD.replace(
        "host: 127.0.0.1, database: test, password: hunter2secret}",
        "host: 'postgres://app:hunter2secret@127.0.0.1/test'}",
    );
    let err = invalid(&cfg, &["`host` takes a host name or address, not a URL"]);
    assert!(!err.contains("hunter2secret"), "password shown:\n{err}");
}

#[test]
fn transformed_sink_without_hash_column_cannot_be_reconciled() {
    let cfg = GOOD.replace(
        "        - {column: name, source_column: name}\n",
        "        - {column: name, source_column: 'TMPL(x{{ name }})'}\n    reconciliation:\n      - {name: r, partition_column: id}\n",
    );
    invalid(&cfg, &["hash_column", "pipelines[0].reconciliation[0]"]);
}

#[test]
fn missing_config_file_is_a_usage_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_synctool"))
        .args(["validate", "-c", "/nonexistent/synctool.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read config file"));
}

#[test]
fn a_config_that_is_not_utf8_is_located() {
    let (path, mut f) = tempfile_in_target("latin1");
    f.write_all(b"datastores:\n  - name: caf\xe9\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_synctool"))
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not UTF-8 text: byte 25 (line 2, column 14)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unknown_pipeline_selection() {
    let o = run(&["validate", "-p", "q"], GOOD);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no pipeline named `q`"));
}

/// A reader that closes the pipe early (`synctool compile | head -1`) ends the output, not
/// the program: no panic, exit 0.
#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    let cfg = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/pg_to_clickhouse_collapse.yaml"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_synctool"))
        .args(["compile", "--format", "sql", "-c", cfg])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run synctool");
    // Close the read end before synctool writes its first byte.
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("synctool output");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Every secret of [`STORES`]; none may ever be printed.
const STORE_SECRETS: &[&str] = &[
    "KeySecret6",
    "CookieSecret1",
    "SessSecret2",
    "SigSecret3",
    "UrlPwSecret7",
    "NatsPwSecret",
    "NatsTokSecret8",
    "HttpPwSecret9",
    "BearerSecret10",
];

/// A webhook, a NATS datastore and an HTTP store with secrets in headers and URLs, each on
/// one line with an unknown key `colour` (so that the error shows the line).
const STORES: &str = r#"
  - {name: hooks, type: webhook, base_url: "http://hookuser:UrlPwSecret7@127.0.0.1:9/", headers: {X-Api-Key: KeySecret6, Cookie: CookieSecret1, X-Session-Id: SessSecret2, X-Signature: SigSecret3, Bad: [1]}, colour: red}
  - {name: bus, type: nats, servers: ["nats://natsuser:NatsPwSecret@127.0.0.1:4299", nats://NatsTokSecret8@127.0.0.1:4298, "natsuser:NatsPwSecret@127.0.0.1:4297"], colour: red}
externalstores:
  - {name: geo, type: http, url: "http://u:HttpPwSecret9@127.0.0.1:9", headers: {Accept: BearerSecret10}, colour: red}
"#;

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows {s}:\n{text}");
    }
}

#[test]
fn config_errors_show_no_header_value_or_url_credentials() {
    let cfg = GOOD.replace(
        "pipelines:\n",
        &format!("{}pipelines:\n", STORES.trim_start_matches('\n')),
    );
    let err = invalid(
        &cfg,
        &[
            "unknown key `colour`",
            "datastores[2].colour",
            "datastores[3].colour",
            "externalstores[0].colour",
            "datastores[2].headers.Bad",
            // The lines are shown, the rest of each URL with them.
            "@127.0.0.1:4299",
            "@127.0.0.1:4297",
            "name: hooks",
        ],
    );
    assert_no_secret("a config error", &err, STORE_SECRETS);

    // A file that does not even parse keeps URL credentials hidden too.
    let err = invalid(
        "datastores:\n  - {name: bus, type: nats, servers: [\"nats://u:NatsPwSecret@h:1\"]\n",
        &["malformed YAML", "-->"],
    );
    assert_no_secret("a YAML error", &err, &["NatsPwSecret"]);

    // Misplaced secrets (a webhook's headers on a database) are hidden as well.
    let cfg = GOOD.replace(
        "password: hunter2secret}",
        "password: hunter2secret, headers: {X-Api-Key: KeySecret6}, token: NatsTokSecret8}",
    );
    let err = invalid(
        &cfg,
        &["`headers` does not apply", "`token` does not apply"],
    );
    assert_no_secret(
        "a misplaced key's error",
        &err,
        &["KeySecret6", "NatsTokSecret8"],
    );

    // An Authorization header beside URL credentials, which would replace it, is refused.
    let cfg = GOOD.replace(
        "pipelines:\n",
        &format!(
            "{}pipelines:\n",
            STORES
                .trim_start_matches('\n')
                .replace(", colour: red", "")
                .replace(", Bad: [1]", "")
                .replace("Accept: BearerSecret10", "authorization: BearerSecret10")
                .replace("X-Api-Key: KeySecret6", "Authorization: KeySecret6")
        ),
    );
    let err = invalid(
        &cfg,
        &[
            "datastores[2].headers.Authorization",
            "externalstores[0].headers.authorization",
            "the URL's would replace the header",
        ],
    );
    assert_no_secret("an Authorization error", &err, STORE_SECRETS);
}

/// GOOD plus an HTTP enrichment whose parameters and URL carry secrets, and stores with
/// secret headers.
fn enriched(on_error: &str) -> String {
    GOOD.replace(
        "pipelines:\n",
        r#"  - {name: hooks, type: webhook, base_url: "http://127.0.0.1:9", headers: {X-Api-Key: KeySecret6}}
externalstores:
  - {name: geo, type: http, url: "http://127.0.0.1:9", headers: {Authorization: "Bearer BearerSecret10"}}
pipelines:
"#,
    )
    .replace(
        "        - {column: name, source_column: name}\n",
        &format!(
            r#"        - {{column: name, source_column: name}}
        - {{column: city, dtype: str, source: geo_lookup, source_column: city}}
    enrichment:
      - externalstore: geo
        name: geo_lookup
        path: "TMPL(http://u:EnrPwSecret44@127.0.0.1:9/zip/{{{{ id }}}})"
        params: {{api_key: "ParamKeySecret42", token: "TMPL(TmplTokSecret43)", X-Signature: SigSecret3, country: de}}
        output: 'lambda v: {{"city": json_get(v, "city")}}'
{on_error}"#
        ),
    )
}

#[test]
fn compile_output_masks_secret_parameters_and_url_credentials() {
    let cfg = enriched("");
    for format in ["text", "json", "sql"] {
        let o = run(&["compile", "--format", format], &cfg);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert_no_secret(
            &format!("compile --format {format}"),
            &format!("{out}{}", stderr(&o)),
            &[
                "ParamKeySecret42",
                "TmplTokSecret43",
                "SigSecret3",
                "EnrPwSecret44",
                "KeySecret6",
                "BearerSecret10",
            ],
        );
        if format != "sql" {
            // Only the secrets are masked: the rest of the lookup is still there to review.
            assert!(
                out.contains("http GET http://***@127.0.0.1:9/zip/{{ id }} ? api_key=***&token=***&X-Signature=***&country=de"),
                "{out}"
            );
        }
    }
}

#[test]
fn on_error_null_unquoted_is_the_null_policy() {
    let policy = |on_error: &str, env: &[(&str, &str)]| {
        let o = run_env(&["compile"], &enriched(on_error), env);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(o.status.code(), Some(0), "{on_error}: {}", stderr(&o));
        let line = out
            .lines()
            .find(|l| l.contains("enrichment geo_lookup from"))
            .unwrap_or_else(|| panic!("{out}"))
            .to_string();
        line.rsplit("on error ").next().unwrap().to_string()
    };
    for null in ["null", "~", "Null", "NULL", "\"null\"", "'null'"] {
        assert_eq!(
            policy(&format!("        on_error: {null}\n"), &[]),
            "null",
            "on_error: {null}"
        );
    }
    assert_eq!(
        policy("        on_error: ${ONERR}\n", &[("ONERR", "null")]),
        "null"
    );
    assert_eq!(
        policy("        on_error: ${ONERR}\n", &[("ONERR", "~")]),
        "null"
    );
    // Not given (or given as nothing) is the default.
    assert_eq!(policy("", &[]), "fail");
    assert_eq!(policy("        on_error:\n", &[]), "fail");
    assert_eq!(policy("        on_error: ${ONERR:-}\n", &[]), "fail");
    assert_eq!(policy("        on_error: skip\n", &[]), "skip");
}

#[test]
fn durations_out_of_range_are_config_errors() {
    let hook = "  - {name: hooks, type: webhook, base_url: \"http://127.0.0.1:9\", timeout: T}\n";
    let bus = "  - {name: bus, type: nats, servers: [\"nats://127.0.0.1:4222\"], per_msg_timeout: T, total_timeout: T}\n";
    let geo =
        "externalstores:\n  - {name: geo, type: http, url: \"http://127.0.0.1:9\", timeout: T}\n";
    for bad in [
        "1e20", "0", "-1", ".nan", ".inf", "86401", "\"1e20\"", "soon",
    ] {
        let cfg = GOOD.replace(
            "pipelines:\n",
            &format!("{hook}{bus}{geo}pipelines:\n").replace('T', bad),
        );
        for cmd in [&["validate"][..], &["apply"][..], &["plan"][..]] {
            let o = run(cmd, &cfg);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd:?} with {bad}:\n{err}");
            assert!(!err.contains("panicked"), "{err}");
            for path in [
                "datastores[2].timeout",
                "datastores[3].per_msg_timeout",
                "datastores[3].total_timeout",
                "externalstores[0].timeout",
            ] {
                assert!(err.contains(path), "{bad}: no {path}:\n{err}");
            }
            assert!(
                err.contains(
                    "must be a number of seconds greater than 0 and at most 86400 (1 day)"
                ),
                "{err}"
            );
            assert!(
                err.contains(":5:"),
                "line:column of the webhook line:\n{err}"
            );
        }
    }
    let ok = GOOD.replace(
        "pipelines:\n",
        &format!("{hook}{bus}{geo}pipelines:\n").replace('T', "86400"),
    );
    let o = run(&["validate"], &ok);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A source database and a webhook and a NATS sink; nothing is contacted before `-r` is
/// checked.
const TO_HOOK_AND_BUS: &str = r#"
datastores:
  - {name: a, type: postgres, host: 127.0.0.1, port: 1, database: test}
  - {name: hooks, type: webhook, base_url: "http://127.0.0.1:9"}
  - {name: bus, type: nats, servers: ["nats://127.0.0.1:9"], subject: s}
pipelines:
  - name: to_hook
    source: {datastore: a, table: t, fields: [{column: id, dtype: int}]}
    sink: {datastore: hooks, fields: [{column: id, source_column: id}]}
  - name: to_bus
    source: {datastore: a, table: t, fields: [{column: id, dtype: int}]}
    sink: {datastore: bus, fields: [{column: id, source_column: id}]}
"#;

#[test]
fn reconciliation_names_are_checked_for_webhook_and_nats_sinks() {
    for (p, kind) in [("to_hook", "webhook sink"), ("to_bus", "NATS sink")] {
        for args in [
            &["apply", "-r", "nosuch", "-p", p][..],
            &["apply", "--dry-run", "-r", "nosuch", "-p", p][..],
            &["plan", "-r", "nosuch", "--exit-code", "-p", p][..],
            &["plan", "--dry-run", "-r", "nosuch", "-p", p][..],
        ] {
            let o = run(args, TO_HOOK_AND_BUS);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}:\n{err}");
            assert!(
                err.contains(&format!("pipeline `{p}` has no reconciliation `nosuch`")),
                "{err}"
            );
            assert!(
                err.contains(&format!("its {kind} is always fully synced")),
                "{err}"
            );
        }
    }
}

#[test]
fn a_lookback_beyond_a_century_is_a_config_error() {
    let cfg = |lookback: &str| {
        GOOD.replace("{column: name, dtype: str}", "{column: at, dtype: datetime}")
            .replace(
                "        - {column: name, source_column: name}\n",
                &format!(
                    "        - {{column: at, source_column: at}}\n    reconciliation:\n      - {{name: ts, strategy: timestamp, partition_column: at, lookback: {lookback}}}\n"
                ),
            )
    };
    for bad in [
        "9000000000000000",
        "3155760001",
        "'datetime.timedelta(days=36526)'",
    ] {
        for cmd in [&["validate"][..], &["apply"][..]] {
            let o = run(cmd, &cfg(bad));
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd:?} {bad}:\n{err}");
            assert!(
                err.contains("pipelines[0].reconciliation[0].lookback"),
                "{err}"
            );
            assert!(
                err.contains("at most 3155760000 seconds (100 years)"),
                "{err}"
            );
            assert!(err.contains(":21:"), "{err}");
        }
    }
    let o = run(&["validate"], &cfg("3155760000"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn quiet_keeps_config_warnings_off_stderr() {
    let text = GOOD.replace(
        "      unique_key: [id]\n",
        "      unique_key: [id]\n      merge_strategy: {strategy: upsert, allow_delete: true}\n",
    )
        + "    reconciliation:\n      - {name: inc, strategy: timestamp, partition_column: id}\n";
    let o = run(&["validate"], &text);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a timestamp reconciliation copies newer rows and never deletes"),
        "{}",
        stderr(&o)
    );
    let o = run(&["-q", "validate"], &text);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "-q: only errors on stderr");
}

#[test]
fn a_start_of_the_wrong_type_for_the_partition_is_a_usage_error() {
    let text = GOOD.to_string()
        + "    reconciliation:\n      - {name: by_id, partition_column: id, initial_partition_interval: 100}\n";
    for cmd in ["plan", "apply"] {
        let o = run(&[cmd, "--start", "datetime.datetime(2024, 1, 1)"], &text);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("--start `datetime.datetime(2024, 1, 1)` gives datetime, and the partition column of reconciliation `by_id` is int"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn a_second_yaml_document_is_refused_where_it_starts() {
    let second = "---\npipelines:\n  - name: p2\n    source: {datastore: a, table: t, fields: [{column: id, dtype: int}]}\n    sink: {datastore: b, type: BOGUS, table: t}\n";
    let cfg = format!("{GOOD}{second}");
    let line = cfg[..cfg.find("---").unwrap()].lines().count() + 1;
    invalid(
        &cfg,
        &[
            "the config must be a single YAML document",
            &format!(":{line}:1"),
            "a second document starts here",
        ],
    );
    // Even an empty one, and one after an explicit end of the first.
    invalid(&format!("{GOOD}---\n"), &["single YAML document"]);
    invalid(
        &format!("{GOOD}...\n---\nx: 1\n"),
        &["single YAML document"],
    );
    // A leading `---` is the one document.
    let o = run(&["validate"], &format!("---{GOOD}"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn an_unknown_template_filter_is_a_compile_error() {
    let with = |tmpl: &str| {
        GOOD.replace(
            "        - {column: name, source_column: name}\n",
            &format!("        - {{column: name, source_column: '{tmpl}'}}\n"),
        )
    };
    let err = invalid(
        &with("TMPL({{ name|frobnicate }}-x)"),
        &[
            "unknown filter `frobnicate` in template",
            "pipelines[0].sink.fields[1].source_column",
            "known filters: ",
        ],
    );
    assert!(err.contains("^^^^^^^^^^"), "the name is pointed at:\n{err}");
    invalid(
        &with("TMPL({{ name | uper }})"),
        &["unknown filter `uper`", "did you mean `upper`?"],
    );
    invalid(
        &with("TMPL({% filter lowr %}{{ name }}{% endfilter %})"),
        &["unknown filter `lowr`", "did you mean `lower`?"],
    );
    invalid(
        &with("TMPL({% if name is not nonee %}x{% endif %})"),
        &["unknown test `nonee`", "did you mean `none`?"],
    );
    // Known filters and tests, and `|` inside a string, pass; compile does too.
    for ok in [
        "TMPL({{ name|upper|default(\"-\") }} {{ \"a|b\" }} {{ name|d(\"\")|trim }})",
        "TMPL({% if name is not none and id is odd %}{{ name|replace(\"a\", \"b\") }}{% endif %})",
    ] {
        for cmd in ["validate", "compile"] {
            let o = run(&[cmd], &with(ok));
            assert_eq!(o.status.code(), Some(0), "{ok}: {}", stderr(&o));
        }
    }
}

#[test]
fn malformed_environment_references_are_refused() {
    let with = |db: &str| {
        GOOD.replace(
            "database: test, password",
            &format!("database: '{db}', password"),
        )
    };
    invalid(
        &with("db_${1BAD}"),
        &[
            "malformed environment variable reference `${1BAD}`",
            "a name cannot start with a digit",
            "datastores[0].database",
            ":3:",
            "`$${` is a literal `${`",
        ],
    );
    invalid(&with("${}"), &["no variable name"]);
    invalid(&with("${A-x}"), &["`-` after the name `A`"]);
    invalid(&with("db_${SYNCTOOL_A"), &["unterminated"]);
    // A reference in a default is expanded; unset, it is an error naming it.
    invalid(
        &with("${SYNCTOOL_TEST_UNSET:-${SYNCTOOL_TEST_UNSET_B}}"),
        &["environment variable `SYNCTOOL_TEST_UNSET_B` is not set"],
    );
    let o = run_env(
        &["compile", "--format", "json"],
        &with("${SYNCTOOL_TEST_UNSET:-${SYNCTOOL_TEST_DB:-x}}_$${LIT}"),
        &[("SYNCTOOL_TEST_DB", "inner")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The database name is not in the plan: validate the value through an unknown key.
    let cfg = GOOD.replace(
        "      table: t\n",
        "      table: '${SYNCTOOL_TEST_UNSET:-${SYNCTOOL_TEST_DB:-x}}_$${LIT}'\n",
    );
    let o = run_env(
        &["compile", "--format", "sql"],
        &cfg,
        &[("SYNCTOOL_TEST_DB", "inner")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("inner_${LIT}"), "{out}");
    // A secret is not quoted.
    let cfg = GOOD.replace("password: hunter2secret", "password: 'hunter2${9secret}'");
    let err = invalid(
        &cfg,
        &[
            "malformed environment variable reference",
            "datastores[0].password",
        ],
    );
    assert_no_secret(
        "a malformed reference in a password",
        &err,
        &["hunter2", "9secret"],
    );
}

#[test]
fn yaml_tags_other_than_the_core_ones_are_refused() {
    let cfg = GOOD.replace(
        "database: test, password",
        "port: !!python/object:os.system 5432, database: test, password",
    );
    invalid(
        &cfg,
        &["unsupported YAML tag `!!python/object:os.system`", ":3:"],
    );
    let cfg = GOOD.replace(
        "database: test, password",
        "port: !local 5432, database: test, password",
    );
    invalid(&cfg, &["unsupported YAML tag `!local`"]);
    let cfg = GOOD.replace("table: t2", "table: !!set {a: 1}");
    invalid(&cfg, &["unsupported YAML tag `!!set`"]);
    // Core tags type their value.
    let cfg = GOOD.replace(
        "database: test, password",
        "port: !!int '5432', database: !!str 12, password",
    );
    let o = run(&["validate"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cfg = GOOD.replace(
        "database: test, password",
        "port: !!int 54x, database: test, password",
    );
    invalid(&cfg, &["a value tagged `!!int` must be an integer"]);
}

#[test]
fn a_nats_server_must_be_a_string() {
    let cfg = GOOD.replace(
        "pipelines:\n",
        "  - {name: bus, type: nats, servers: [\"nats://127.0.0.1:4222\", 5], subject: s}\npipelines:\n",
    );
    invalid(
        &cfg,
        &[
            "a NATS server must be a URL such as `nats://host:4222`, found an integer",
            "datastores[2].servers[1]",
        ],
    );
    let cfg = GOOD.replace(
        "pipelines:\n",
        "  - {name: bus, type: nats, servers: 4222, subject: s}\npipelines:\n",
    );
    invalid(
        &cfg,
        &["a NATS server must be a URL", "datastores[2].servers"],
    );
}

#[test]
fn tls_takes_sslmode_values_too() {
    for (tls, ok) in [
        ("require", true),
        ("verify-full", true),
        ("disable", true),
        ("true", true),
        ("'false'", true),
        ("requir", false),
        ("5", false),
    ] {
        let cfg = GOOD.replace(
            "database: test, password",
            &format!("database: test, tls: {tls}, password"),
        );
        let o = run(&["compile", "--format", "json"], &cfg);
        if ok {
            assert_eq!(o.status.code(), Some(0), "tls: {tls}: {}", stderr(&o));
        } else {
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "tls: {tls}: {err}");
            assert!(
                err.contains("`tls` must be true, false or an sslmode value")
                    && err.contains("datastores[0].tls"),
                "{err}"
            );
        }
    }
    let cfg = GOOD.replace(
        "database: test, password",
        "database: test, tls: requir, password",
    );
    invalid(&cfg, &["did you mean `require`?"]);
    // `tls: disable` with a certificate is refused, as `sslmode: disable` is.
    let cfg = GOOD.replace(
        "database: test, password",
        "database: test, tls: disable, sslrootcert: /x.pem, password",
    );
    invalid(&cfg, &["`sslrootcert` has no effect when TLS is disabled"]);
}

#[test]
fn http_header_names_and_values_are_checked() {
    let cfg = GOOD.replace(
        "pipelines:\n",
        "  - {name: hooks, type: webhook, base_url: \"http://127.0.0.1:9/\", headers: {\"Bad Header\": HdrSecret1, X-Ok: \"line1\\nHdrSecret2\"}}\nexternalstores:\n  - {name: geo, type: http, url: \"http://127.0.0.1:9\", headers: {\"X:Y\": HdrSecret3, X-Nul: \"a\\0HdrSecret4\", X-Tab: \"a\\tb\"}}\npipelines:\n",
    );
    let err = invalid(
        &cfg,
        &[
            "`Bad Header` is not a valid HTTP header name: it holds a space",
            "datastores[2].headers.Bad Header",
            "the value of header `X-Ok` holds a line break",
            "datastores[2].headers.X-Ok",
            "`X:Y` is not a valid HTTP header name: it holds `:`",
            "the value of header `X-Nul` holds a NUL character",
            "externalstores[0].headers.X-Nul",
        ],
    );
    assert!(!err.contains("header `X-Tab`"), "a tab is allowed:\n{err}");
    assert_no_secret(
        "a header error",
        &err,
        &["HdrSecret1", "HdrSecret2", "HdrSecret3", "HdrSecret4"],
    );
    // A value from the environment is checked as it is expanded.
    let cfg = GOOD.replace(
        "pipelines:\n",
        "  - {name: hooks, type: webhook, base_url: \"http://127.0.0.1:9/\", headers: {X-Api-Key: \"${SYNCTOOL_TEST_KEY}\"}}\npipelines:\n",
    );
    let o = run_env(
        &["validate"],
        &cfg,
        &[("SYNCTOOL_TEST_KEY", "EnvKey5\r\nX-Evil: 1")],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the value of header `X-Api-Key` holds a line break"),
        "{err}"
    );
    assert_no_secret("a header error", &err, &["EnvKey5", "X-Evil"]);
}

#[test]
fn a_refused_source_field_is_not_reported_again_where_it_is_used() {
    let cfg = |fields: &str| {
        format!(
            r#"
datastores:
  - {{name: a, type: postgres, host: 127.0.0.1, database: test}}
  - {{name: b, type: mysql, host: 127.0.0.1, database: test}}
pipelines:
  - name: p
    source:
      datastore: a
      table: {{table: t, alias: s}}
      fields:
        - {{column: s.id, dtype: int}}
        - {{column: s.amount, dtype: int}}
{fields}
    sink:
      datastore: b
      table: t2
      unique_key: [id]
      fields:
        - {{column: id, source_column: s__id}}
        - {{column: name, source_column: s__name}}
        - {{column: up, source_column: 'upper(s__name)'}}
        - {{column: t, source_column: 'TMPL({{{{ s__name }}}})'}}
"#
        )
    };
    for (field, needle) in [
        (
            "        - {column: s.name, dtype: strng}",
            "unknown dtype `strng`",
        ),
        (
            "        - {column: s.name, dtype: 'decimal(12,20)'}",
            "is not a decimal synctool keeps",
        ),
        ("        - {column: s.name, dtype: 5}", "dtype"),
        ("        - {column: s.name}", "needs a `dtype`"),
    ] {
        let err = invalid(&cfg(field), &[needle]);
        assert!(err.contains("1 error"), "{field}:\n{err}");
        assert!(!err.contains("unknown source column"), "{field}:\n{err}");
        assert!(!err.contains("s__amount"), "{field}:\n{err}");
    }
    // A duplicate alias: the second field is refused, uses of its default alias are not.
    let err = invalid(
        &cfg("        - {column: s.name, dtype: str, alias: s__amount}"),
        &["two source fields have the alias `s__amount`"],
    );
    assert!(err.contains("1 error"), "{err}");
    // A name nobody declared is still reported.
    invalid(
        &cfg("        - {column: s.nam, dtype: strng}"),
        &["unknown dtype `strng`", "unknown source column `s__name`"],
    );
}

#[test]
fn a_failed_write_to_stdout_exits_1() {
    for log_format in ["text", "json"] {
        let mut f = tempfile_in_target("cfg");
        f.1.write_all(GOOD.as_bytes()).unwrap();
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let o = Command::new(env!("CARGO_BIN_EXE_synctool"))
            .args(["compile", "--log-format", log_format, "-c"])
            .arg(&f.0)
            .stdout(full)
            .output()
            .expect("run synctool");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot write the output"), "{err}");
        if log_format == "json" {
            for l in err.lines() {
                serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            }
        }
    }
}

#[test]
fn other_crates_debug_lines_never_reach_stderr() {
    // A NATS sink on a port nobody listens on: the NATS client logs each failed attempt
    // with the server URL, its password included, at debug level.
    let cfg = r#"
datastores:
  - {name: a, type: postgres, host: 127.0.0.1, port: 5432, username: postgres, database: test}
  - {name: bus, type: nats, servers: ["nats://agent:pw-n4ts-s3cret@127.0.0.1:18402"], subject: qacli.x}
pipelines:
  - name: p
    source:
      datastore: a
      table: pg_catalog.pg_namespace
      fields: [{column: oid, dtype: int}]
    sink:
      datastore: bus
      fields: [{column: oid, source_column: oid}]
"#;
    for env in [
        &[][..],
        &[("SYNCTOOL_LOG", "trace"), ("RUST_LOG", "trace")][..],
    ] {
        let o = run_env(&["apply", "-vvv"], cfg, env);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(!err.contains("pw-n4ts-s3cret"), "{err}");
        assert!(!err.contains("connection attempt failed"), "{err}");
        // -vvv is synctool's trace level: each statement sent.
        assert!(err.contains("TRACE"), "{err}");
    }
}

/// A webhook `base_url` or an http store `url` that does not parse (a port beyond 65535, a
/// malformed IPv6 address) is refused by `validate` at its line, showing the text (without
/// its query string), instead of failing when the run sends its first request.
#[test]
fn unparsable_webhook_and_lookup_urls_are_config_errors() {
    for (bad, why) in [
        ("http://hooks.example.com:99999/in", "invalid port number"),
        ("http://[::1/in", "invalid IPv6 address"),
    ] {
        let cfg = format!(
            r#"
datastores:
  - {{name: a, type: postgres, host: 127.0.0.1, database: test}}
  - {{name: hooks, type: webhook, base_url: "{bad}?token=T0kSecret"}}
externalstores:
  - {{name: api, type: http, url: "{bad}"}}
pipelines:
  - name: p
    source:
      datastore: a
      table: t
      fields:
        - {{column: id, dtype: int}}
    sink:
      datastore: hooks
      url_path: /rows
      fields:
        - {{column: id, source_column: id}}
"#
        );
        let err = invalid(
            &cfg,
            &[
                &format!("`base_url` is not a valid URL: {why}: `{bad}`"),
                "datastores[1].base_url",
                ":4:",
                &format!("`url` is not a valid URL: {why}: `{bad}`"),
                "externalstores[0].url",
                ":6:",
            ],
        );
        assert!(!err.contains("T0kSecret"), "{err}");
    }
}
