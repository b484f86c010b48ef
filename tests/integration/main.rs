//! The integration test binary: everything that runs the built CLI or talks to real services
//! (PostgreSQL, MariaDB, ClickHouse 18.16 over HTTP, and a current ClickHouse engine through
//! chdb). A missing service fails the test with a message naming it; start them all with
//! `scripts/services.sh`.

mod apply;
mod cli;
mod concurrent;
mod connectors;
mod enrich;
mod examples;
mod frontend_fuzz;
mod hash_golden;
mod key_types;
mod kill_fuzz;
mod matrix;
mod nats_source;
mod plan_deletes;
mod recon_edges;
mod recon_fuzz;
mod recon_fuzz_features;
mod row_estimate;
mod statements;
mod support;
mod timestamp_edges;
mod tls;
mod value_edges;
