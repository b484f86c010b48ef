//! Placeholder for templates (being written on its own branch).

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Template source.
    pub source: String,
    /// Variables it reads.
    pub vars: Vec<String>,
}
