//! The command line: exit codes, and diagnostics that name the YAML path and line:column,
//! show the source line, and never show a secret.

use std::io::Write;
use std::process::{Command, Output};

fn run(args: &[&str], config: &str) -> Output {
    let mut f = tempfile_in_target("cfg");
    f.1.write_all(config.as_bytes()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synctool"));
    cmd.args(args)
        .arg("-c")
        .arg(&f.0)
        .env_remove("SYNCTOOL_TEST_UNSET");
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

#[test]
fn unset_environment_variable_without_default() {
    let cfg = GOOD.replace(
        "password: hunter2secret",
        "password: '${SYNCTOOL_TEST_UNSET}'",
    );
    invalid(
        &cfg,
        &["SYNCTOOL_TEST_UNSET", "is not set", "datastores[0]"],
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
