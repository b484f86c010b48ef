//! The integration test binary: everything that runs the built CLI or talks to real servers.

mod cli;
mod connectors;
mod examples;
mod frontend_fuzz;
