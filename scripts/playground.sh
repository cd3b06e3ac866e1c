#!/usr/bin/env bash
# The main job: a local 3-node cluster on loopback with real PostgreSQL.
# Installs missing system dependencies, builds raftgres, starts the cluster,
# prints each node's connection string and API URL; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked --bin raftgres --bin raftctl
exec target/release/raftgres playground "$@"
