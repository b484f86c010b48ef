//! Parameter binding. While a statement is built, each bound value gets a provisional
//! marker; [`Binder::finish`] then walks the finished statements in text order, replaces
//! the markers by the dialect's placeholders (`$n`, `?`, `{name:Type}`) and lists the
//! parameters in that order. Building the AST in any order therefore still yields
//! placeholders and parameter lists that match the printed SQL.

use crate::sql::hash;
use crate::sql::step::{Param, Stmt};
use crate::sql::Dialect;
use crate::types::Dtype;
use sqlparser::ast::{visit_expressions_mut, Expr, Value};
use std::ops::ControlFlow;

/// Prefix of provisional markers; no dialect placeholder starts with it.
const MARK: &str = "\u{1}synctool_param:";

/// Collects the values a statement binds.
#[derive(Debug, Default)]
pub struct Binder {
    pending: Vec<Param>,
}

impl Binder {
    /// A new, empty binder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A bound value named `name` of type `dtype`.
    pub fn bind(&mut self, name: &str, dtype: Dtype) -> Expr {
        let i = self.pending.len();
        self.pending.push(Param {
            name: name.to_string(),
            dtype,
        });
        Expr::Value(Value::Placeholder(format!("{MARK}{i}")).with_empty_span())
    }

    /// Replaces the markers in `stmts` by `d`'s placeholders, numbering them in text order,
    /// and returns the parameters in that order.
    pub fn finish(self, d: &dyn Dialect, stmts: &mut [Stmt]) -> Vec<Param> {
        let mut out: Vec<Param> = Vec::new();
        let mut visit = |e: &mut Expr| {
            if let Expr::Value(v) = e {
                if let Value::Placeholder(p) = &v.value {
                    if let Some(i) = p.strip_prefix(MARK) {
                        let i: usize = i.parse().expect("marker index");
                        let param = self.pending[i].clone();
                        *e = hash::param(d, out.len() + 1, &param.name, param.dtype);
                        out.push(param);
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        };
        for s in stmts.iter_mut() {
            let _ = match s {
                Stmt::Ast(st) => visit_expressions_mut(st.as_mut(), &mut visit),
                Stmt::ClickhouseAlterDelete { table, selection } => {
                    let _ = visit_expressions_mut(table, &mut visit);
                    visit_expressions_mut(selection.as_mut(), &mut visit)
                }
                Stmt::ClickhouseInsertRowBinary { .. } | Stmt::MysqlLoadDataLocal { .. } => {
                    ControlFlow::Continue(())
                }
            };
        }
        out
    }
}
