#!/usr/bin/env bash
# The test command: installs missing system dependencies, then runs every
# test of the workspace (unit, property, openraft's storage conformance
# suite, and the multi-node integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --locked "$@"
