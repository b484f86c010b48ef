//! The integration test binary: everything that runs the built CLI or talks to real servers.

mod apply;
mod cli;
mod examples;
mod frontend_fuzz;
