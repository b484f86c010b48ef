//! What a run did (or, for `plan`, would do), in the stable JSON shape of SPEC §1 and as
//! human text.

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
        assert!(
            render_text(&[quiet], true, &[]).ends_with("no drift: apply would change nothing\n")
        );
    }
}
