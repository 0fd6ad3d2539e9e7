#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs every test of the
# workspace (unit, integration, model-based, crash, and real-mount tests when FUSE works).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked "$@"
