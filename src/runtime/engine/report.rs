//! What a run did (or, for `plan`, would do), in the stable JSON shape of SPEC §1 and as
//! human text.

use super::rows::key_label;
use crate::expr::Value;
use crate::ir::Pipeline;
use crate::runtime::transform::value_to_json;
use serde::Serialize;

/// Block comparison counts. Unchanged blocks are counted at the level where they were
/// found equal; changed blocks at the level where they became leaves (after splitting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BlockCounts {
    /// Same row count and hash on both sides.
    pub unchanged: u64,
    /// Present on both sides with a different count or hash.
    pub modified: u64,
    /// Only in the source.
    pub added: u64,
    /// Only in the sink.
    pub deleted: u64,
}

/// A key that the row-by-row comparison of a changed block found changed
/// ([`PipelineReport::keys`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    /// `added` (only the source holds the key), `modified` (both hold it, with other
    /// values) or `deleted` (only the sink holds it, and `allow_delete` removes it).
    pub change: &'static str,
    /// The key's values by sink column.
    pub key: serde_json::Map<String, serde_json::Value>,
    /// `id=5, region="eu"`, for the text output.
    #[serde(skip)]
    pub label: String,
}

impl KeyChange {
    /// `change` of the key whose values (in `p.key` order) are `key`.
    pub fn of(p: &Pipeline, change: &'static str, key: &[Value]) -> KeyChange {
        KeyChange {
            change,
            key: p
                .key
                .iter()
                .zip(key)
                .map(|(k, v)| (k.sink_column.clone(), value_to_json(v)))
                .collect(),
            label: key_label(p, &key.iter().collect::<Vec<_>>()),
        }
    }

    /// The text output's mark: `+`, `~` or `-`.
    fn mark(&self) -> char {
        match self.change {
            "added" => '+',
            "deleted" => '-',
            _ => '~',
        }
    }
}

/// The outcome of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineReport {
    /// Pipeline name.
    pub name: String,
    /// `full`, `md5sum_hash`, `hash_md5_hash` or `timestamp`.
    pub mode: String,
    /// Source rows read by extracts.
    pub rows_read: u64,
    /// Rows merged into the sink (plan: rows apply would merge).
    pub rows_written: u64,
    /// Sink rows deleted (plan: rows apply would delete).
    pub rows_deleted: u64,
    /// Of `rows_written`, those whose key the sink lacked (added rows; the rest were
    /// modified), as a block-hash reconciliation tells them apart. Text output only: the
    /// JSON shape is SPEC §1's.
    #[serde(skip)]
    pub rows_new: u64,
    /// Whether the sink's merge deletes rows the source lacks (`allow_delete`): without
    /// it, the text output notes blocks of sink rows left in place. Text output only.
    #[serde(skip)]
    pub allow_delete: bool,
    /// Block comparison counts (all zero for full syncs and timestamp runs).
    pub blocks: BlockCounts,
    /// Wall time.
    pub duration_ms: u64,
    /// With `--show-keys N`: the first N changed keys the row-by-row comparison of changed
    /// blocks found (blocks in range order, keys in key order within a block). Absent
    /// without the option, so that the JSON shape stays SPEC §1's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyChange>>,
    /// With `--show-keys`: the changed rows the row-by-row comparison found, listed or
    /// not. The rest of `rows_written` and `rows_deleted` was never compared row by row
    /// (a full sync, blocks one side lacks, rows after a timestamp window). Text output
    /// only.
    #[serde(skip)]
    pub keys_found: u64,
}

impl PipelineReport {
    /// An empty report.
    pub fn new(name: &str, mode: &str) -> PipelineReport {
        PipelineReport {
            name: name.to_string(),
            mode: mode.to_string(),
            rows_read: 0,
            rows_written: 0,
            rows_deleted: 0,
            rows_new: 0,
            allow_delete: false,
            blocks: BlockCounts::default(),
            duration_ms: 0,
            keys: None,
            keys_found: 0,
        }
    }

    /// Whether the run changed (plan: would change) the sink.
    pub fn has_drift(&self) -> bool {
        self.rows_written > 0 || self.rows_deleted > 0
    }
}

/// `{"pipelines": [...]}`.
pub fn render_json(reports: &[PipelineReport]) -> serde_json::Value {
    serde_json::json!({ "pipelines": reports })
}

/// One paragraph per pipeline, then a line naming the pipelines that `failed` (their errors
/// went to stderr). `plan` words it as what apply would do and ends with the verdict on
/// drift, which is only given when no pipeline failed.
pub fn render_text(reports: &[PipelineReport], plan: bool, failed: &[&str]) -> String {
    let mut out = String::new();
    for r in reports {
        let (w, d) = if plan {
            ("would write", "would delete")
        } else {
            ("written", "deleted")
        };
        let b = r.blocks;
        let compared = b != BlockCounts::default();
        // A block-hash reconciliation tells added rows from modified ones (a timestamp
        // run's rows after its compared window are not told apart).
        let split = if compared && r.rows_written > 0 && r.mode != "timestamp" {
            format!(
                " ({} added, {} modified)",
                r.rows_new,
                r.rows_written - r.rows_new.min(r.rows_written)
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "pipeline {} ({}): {} rows read, {} {w}{split}, {} {d}",
            r.name, r.mode, r.rows_read, r.rows_written, r.rows_deleted
        ));
        if compared {
            out.push_str(&format!(
                "; blocks: {} unchanged, {} modified, {} added, {} deleted",
                b.unchanged, b.modified, b.added, b.deleted
            ));
        }
        out.push_str(&format!(" in {} ms\n", r.duration_ms));
        if let Some(keys) = &r.keys {
            out.push_str(&key_list(r, keys));
        }
        // A timestamp window's "deleted" block is one whose rows moved past the window (or
        // left the filters): such runs never delete, whatever `allow_delete` says.
        if b.deleted > 0 && !r.allow_delete && r.mode != "timestamp" {
            out.push_str(&format!(
                "  ({} block(s) hold sink rows the source lacks; without `allow_delete` they stay)\n",
                b.deleted
            ));
        }
    }
    if !failed.is_empty() {
        out.push_str(&format!("failed: {}\n", failed.join(", ")));
    }
    if plan {
        let drift = reports.iter().any(|r| r.has_drift());
        out.push_str(if drift {
            "drift found: apply would change the sink\n"
        } else if failed.is_empty() {
            "no drift: apply would change nothing\n"
        } else {
            "no verdict: a pipeline failed before every sink was compared\n"
        });
    }
    out
}

/// The `--show-keys` lines of `r`: a header saying how many changed rows the row-by-row
/// comparison found and how many changed rows it never saw, then one line per key.
fn key_list(r: &PipelineReport, keys: &[KeyChange]) -> String {
    let changed = r.rows_written + r.rows_deleted;
    let whole = changed.saturating_sub(r.keys_found);
    if changed == 0 && r.keys_found == 0 {
        return String::new();
    }
    let mut out = if r.keys_found == 0 {
        format!("  no keys to list: the {whole} row(s) were not compared row by row (a full sync, blocks one side lacks, rows after a timestamp window)\n")
    } else {
        let more = if whole > 0 {
            format!("; {whole} more row(s) not compared row by row")
        } else {
            String::new()
        };
        format!(
            "  keys: {} of {} changed row(s) found row by row{more}\n",
            keys.len(),
            r.keys_found
        )
    };
    for k in keys {
        out.push_str(&format!("    {} {}\n", k.mark(), k.label));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_text_tells_added_from_modified_rows_and_names_kept_sink_rows() {
        let mut r = PipelineReport::new("p", "md5sum_hash");
        r.rows_read = 12;
        r.rows_written = 5;
        r.rows_new = 2;
        r.blocks = BlockCounts {
            unchanged: 7,
            modified: 2,
            added: 1,
            deleted: 1,
        };
        let text = render_text(&[r.clone()], true, &[]);
        assert!(
            text.starts_with("pipeline p (md5sum_hash): 12 rows read, 5 would write (2 added, 3 modified), 0 would delete; blocks: 7 unchanged, 2 modified, 1 added, 1 deleted in 0 ms\n"),
            "{text}"
        );
        assert!(
            text.contains("1 block(s) hold sink rows the source lacks"),
            "{text}"
        );
        assert!(
            text.ends_with("drift found: apply would change the sink\n"),
            "{text}"
        );
        // With allow_delete, a deleted block that ends with nothing deleted (its row moved
        // to another block, and was written there) is no reason for the hint.
        let mut moved = r.clone();
        moved.allow_delete = true;
        let text = render_text(&[moved], false, &[]);
        assert!(!text.contains("allow_delete"), "{text}");
        // A timestamp run never deletes: no `allow_delete` hint there.
        let mut t = r.clone();
        t.mode = "timestamp".into();
        let text = render_text(&[t], true, &[]);
        assert!(!text.contains("allow_delete"), "{text}");
        // JSON keeps SPEC §1's shape.
        let json = render_json(&[r]);
        assert!(json["pipelines"][0].get("rows_new").is_none(), "{json}");
        let quiet = PipelineReport::new("q", "full");
        assert!(json["pipelines"][0].get("keys").is_none(), "{json}");
        assert!(
            render_text(&[quiet], true, &[]).ends_with("no drift: apply would change nothing\n")
        );
    }

    #[test]
    fn show_keys_lines_say_what_the_row_comparison_found_and_what_it_never_saw() {
        let mut r = PipelineReport::new("p", "md5sum_hash");
        r.rows_written = 7;
        r.rows_deleted = 1;
        r.keys_found = 3;
        let key = |change, id: i64| KeyChange {
            change,
            key: serde_json::json!({ "id": id }).as_object().unwrap().clone(),
            label: format!("id={id}"),
        };
        r.keys = Some(vec![key("modified", 4), key("deleted", 9)]);
        let text = render_text(&[r.clone()], true, &[]);
        assert!(
            text.contains("\n  keys: 2 of 3 changed row(s) found row by row; 5 more row(s) not compared row by row\n    ~ id=4\n    - id=9\n"),
            "{text}"
        );
        let json = render_json(&[r.clone()]);
        assert_eq!(
            json["pipelines"][0]["keys"],
            serde_json::json!([
                {"change": "modified", "key": {"id": 4}},
                {"change": "deleted", "key": {"id": 9}}
            ])
        );
        // Nothing changed: no key lines at all.
        let mut quiet = PipelineReport::new("q", "md5sum_hash");
        quiet.keys = Some(vec![]);
        assert!(!render_text(&[quiet], true, &[]).contains("keys"));
    }
}
