#!/usr/bin/env bash
# The whole suite: services up, formatting, lints, every test against the real services.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/services.sh

cargo fmt --check
cargo clippy --all-targets -- -D warnings

if ! command -v cargo-nextest >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi
# CI=true and INSTA_UPDATE=no: a pending or missing snapshot fails instead of being written.
# Doctests first, so that the run closes on nextest's summary of the whole suite.
CI=true INSTA_UPDATE=no cargo test --doc
CI=true INSTA_UPDATE=no cargo nextest run --no-fail-fast
