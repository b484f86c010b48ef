//! Placeholder API of templates (the implementation lands from its own branch).
#![allow(missing_docs, dead_code, unused_variables)]
use crate::diag::{Diagnostic, Span};

#[derive(Debug, Clone)]
pub struct Template {
    pub source: String,
    pub vars: Vec<String>,
}
#[derive(Debug, Clone)]
pub struct TemplateError;
impl From<TemplateError> for Diagnostic {
    fn from(_: TemplateError) -> Self {
        Diagnostic::error("template")
    }
}
pub fn compile(src: &str, origin: Span, known: &[&str]) -> Result<Template, TemplateError> {
    Err(TemplateError)
}
