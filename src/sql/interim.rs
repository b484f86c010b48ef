//! Interim step types until the generator lands (replaced by the generator's own).
#![allow(missing_docs)]
use crate::types::Dtype;

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub dtype: Dtype,
}
#[derive(Debug, Clone)]
pub struct SqlStep {
    pub id: String,
    pub dialect: super::DialectKind,
    pub store: String,
    pub purpose: String,
    pub statements: Vec<String>,
    pub params: Vec<Param>,
}
#[derive(Debug, thiserror::Error)]
#[error("sql")]
pub struct SqlError;
pub fn generate(_p: &crate::ir::Pipeline) -> Result<Vec<SqlStep>, SqlError> {
    Ok(Vec::new())
}
