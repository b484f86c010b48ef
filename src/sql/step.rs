//! The generator's output: steps, statements and their parameters.

use crate::sql::DialectKind;
use crate::types::Dtype;
use sqlparser::ast::{Expr, Ident, ObjectName, Statement};
use std::fmt;

/// Which datastore a step runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The pipeline's source.
    Source,
    /// The pipeline's sink.
    Sink,
    /// The `sourcestate` table's datastore.
    SourceState,
    /// The `sinkstate` table's datastore.
    SinkState,
}

/// A value the runtime binds when it runs a step, in placeholder order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Param {
    /// What is bound (`filter_0`, `range_start`, …). A name may repeat: MySQL `?`
    /// placeholders are positional, so a value used twice is bound twice.
    pub name: String,
    /// The type it is bound as.
    pub dtype: Dtype,
}

/// One SQL statement. Most are sqlparser statements; the variants cover syntax sqlparser
/// cannot print, and are themselves printed from sqlparser-built parts only.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// A statement printed by sqlparser.
    Ast(Box<Statement>),
    /// ClickHouse `ALTER TABLE t DELETE WHERE …` (an asynchronous mutation).
    ClickhouseAlterDelete {
        /// The table.
        table: ObjectName,
        /// The rows to delete.
        selection: Box<Expr>,
    },
    /// ClickHouse `INSERT INTO t (cols) FORMAT RowBinary`, the rows following in the body.
    ClickhouseInsertRowBinary {
        /// The table.
        table: ObjectName,
        /// The columns, in the order the rows are encoded.
        columns: Vec<Ident>,
    },
    /// MySQL `LOAD DATA LOCAL INFILE 'synctool' INTO TABLE t CHARACTER SET utf8mb4 FIELDS
    /// TERMINATED BY ',' ESCAPED BY '\' LINES TERMINATED BY ';' (cols)`: the client sends
    /// the rows as text when the server asks for the file, `\` escaping the separators and
    /// itself, `\N` for NULL. (The session runs with `NO_BACKSLASH_ESCAPES`, so `'\'` is
    /// one backslash, and printable separators need no escapes in the statement.)
    MysqlLoadDataLocal {
        /// The table.
        table: ObjectName,
        /// The columns, in the order the fields are written.
        columns: Vec<Ident>,
    },
}

impl Stmt {
    /// Wraps a sqlparser statement.
    pub fn ast(s: Statement) -> Self {
        Stmt::Ast(Box::new(s))
    }

    /// The names of a query's result columns (their aliases, without the prefix of a
    /// ClickHouse read alias, else their text); none for other statements.
    pub fn result_columns(&self) -> Vec<String> {
        let Stmt::Ast(s) = self else {
            return Vec::new();
        };
        let Statement::Query(q) = s.as_ref() else {
            return Vec::new();
        };
        let sqlparser::ast::SetExpr::Select(sel) = q.body.as_ref() else {
            return Vec::new();
        };
        sel.projection
            .iter()
            .map(|item| match item {
                sqlparser::ast::SelectItem::ExprWithAlias { alias, .. } => alias
                    .value
                    .strip_prefix(crate::sql::build::READ_ALIAS_PREFIX)
                    .unwrap_or(&alias.value)
                    .to_string(),
                other => other.to_string(),
            })
            .collect()
    }
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `{:#}` pretty-prints (one clause per line) for review; `{}` stays on one line.
            Stmt::Ast(s) if f.alternate() => write!(f, "{s:#}"),
            Stmt::Ast(s) => write!(f, "{s}"),
            Stmt::ClickhouseAlterDelete { table, selection } if f.alternate() => {
                write!(f, "ALTER TABLE {table}\nDELETE WHERE\n  {selection:#}")
            }
            Stmt::ClickhouseAlterDelete { table, selection } => {
                write!(f, "ALTER TABLE {table} DELETE WHERE {selection}")
            }
            Stmt::ClickhouseInsertRowBinary { table, columns } => {
                write!(f, "INSERT INTO {table} (")?;
                for (i, c) in columns.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str(") FORMAT RowBinary")
            }
            Stmt::MysqlLoadDataLocal { table, columns } => {
                let sep = if f.alternate() { "\n" } else { " " };
                write!(
                    f,
                    "LOAD DATA LOCAL INFILE 'synctool' INTO TABLE {table}{sep}CHARACTER SET utf8mb4{sep}FIELDS TERMINATED BY ',' ESCAPED BY '\\'{sep}LINES TERMINATED BY ';'{sep}("
                )?;
                for (i, c) in columns.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// One step of a pipeline's plan: statements run together against one datastore.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlStep {
    /// Stable id (`source.extract`, `recon.daily.sink.block_hash`, …).
    pub id: String,
    /// Which datastore it runs against.
    pub side: Side,
    /// Its dialect.
    pub dialect: DialectKind,
    /// The datastore name.
    pub store: String,
    /// One line: what it does and when the runtime runs it.
    pub purpose: String,
    /// The statements, run in order.
    pub statements: Vec<Stmt>,
    /// Bound values of all statements, in placeholder order across the statements.
    pub params: Vec<Param>,
}

impl SqlStep {
    /// The statements as text, one per entry.
    pub fn sql(&self) -> Vec<String> {
        self.statements.iter().map(|s| s.to_string()).collect()
    }
}
