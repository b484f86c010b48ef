//! Errors of SQL generation. The checker rejects most bad configs earlier; these name what
//! the generator itself cannot express.

/// Why SQL could not be generated for a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// A pushed-down expression has no translation in the source dialect.
    #[error("pipeline `{pipeline}`: the expression for `{alias}` cannot be computed by the {dialect} source")]
    NotPushable {
        /// Pipeline name.
        pipeline: String,
        /// The pushed alias.
        alias: String,
        /// Source dialect name.
        dialect: &'static str,
    },
    /// A name used by the row hash or the key is neither a source field nor a pushed alias.
    #[error("pipeline `{pipeline}`: `{name}` is not a source field or pushed expression")]
    UnknownAlias {
        /// Pipeline name.
        pipeline: String,
        /// The unresolved name.
        name: String,
    },
    /// A step needs the row key (`sink.unique_key`) and there is none.
    #[error("pipeline `{pipeline}`: {what} needs `sink.unique_key`")]
    MissingKey {
        /// Pipeline name.
        pipeline: String,
        /// What needed it.
        what: &'static str,
    },
    /// A join the target dialect cannot run.
    #[error("pipeline `{pipeline}`: {dialect} cannot run the join on `{table}`: {reason}")]
    UnsupportedJoin {
        /// Pipeline name.
        pipeline: String,
        /// Dialect name.
        dialect: &'static str,
        /// The joined table's qualifier.
        table: String,
        /// Why.
        reason: &'static str,
    },
    /// A state table lacks a column reconciliation needs.
    #[error("pipeline `{pipeline}`: the {side} state table has no {what}")]
    StateColumn {
        /// Pipeline name.
        pipeline: String,
        /// `source` or `sink`.
        side: &'static str,
        /// The missing column's role.
        what: &'static str,
    },
}
