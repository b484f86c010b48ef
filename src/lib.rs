//! synctool: a declarative compiler and runtime for data-synchronisation pipelines.
//!
//! The stages, in order (see ARCHITECTURE.md): [`config`] → [`check`] → [`ir`] → [`sql`] →
//! [`plan`]. Only the runtime does I/O. Expressions ([`expr`]) and templates ([`template`])
//! are compiled by the checker.

pub mod check;
pub mod config;
pub mod diag;
pub mod driver;
pub mod expr;
pub mod ir;
pub mod plan;
pub mod runtime;
pub mod sql;
pub mod template;
pub mod types;
