//! synctool: a declarative compiler and runtime for data-synchronisation pipelines.
//!
//! The stages, in order (see ARCHITECTURE.md): [`config`] → [`check`] → [`ir`] → [`sql`] →
//! [`plan`] → [`runtime`]. Only the runtime does I/O.

pub mod diag;
pub mod expr;
pub mod sql;
pub mod template;
pub mod types;
