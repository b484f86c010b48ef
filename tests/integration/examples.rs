//! Every example config compiles; its text plan is snapshot-tested (one snapshot per example
//! in `snapshots/`), and compiling twice gives the same bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use synctool::driver::frontend;
use synctool::plan;

/// The example configs, sorted by name.
pub fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected at least 8 examples, found {}",
        files.len()
    );
    files
}

/// Compile one example with an empty environment (every `${VAR:-default}` takes its default).
pub fn compile_example(path: &Path) -> plan::Plan {
    let text = std::fs::read_to_string(path).expect("example readable");
    let name = format!("examples/{}", path.file_name().unwrap().to_string_lossy());
    let env: HashMap<String, String> = HashMap::new();
    let fe = match frontend(&name, &text, &env, &[]) {
        Ok(f) => f,
        Err(failed) => panic!("{name} does not check:\n{}", failed.render()),
    };
    plan::build(&fe.checked.program).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_example_compiles_to_its_snapshot() {
    for path in example_files() {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = plan::render_text(&compile_example(&path));
        let again = plan::render_text(&compile_example(&path));
        assert_eq!(text, again, "{stem}: compile output is not deterministic");
        insta::with_settings!({
            snapshot_path => Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(stem, text);
        });
    }
}

#[test]
fn json_plan_has_the_documented_shape() {
    for path in example_files() {
        let v = plan::render_json(&compile_example(&path));
        let pipelines = v["pipelines"].as_array().expect("pipelines array");
        assert!(!pipelines.is_empty());
        for p in pipelines {
            assert!(p["name"].is_string());
            for side in ["source", "sink"] {
                assert!(p[side]["datastore"].is_string(), "{side}.datastore");
                assert!(p[side]["dialect"].is_string(), "{side}.dialect");
            }
            for s in p["steps"].as_array().expect("steps") {
                for k in ["id", "kind", "datastore", "dialect"] {
                    assert!(s[k].is_string(), "step.{k} in {}", path.display());
                }
                assert!(s["sql"].is_string() || s["sql"].is_array());
                assert!(s["params"].is_array());
            }
        }
    }
}
