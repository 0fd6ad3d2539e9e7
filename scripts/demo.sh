#!/usr/bin/env bash
# The README's main job: builds tessera and runs its guided tour on generated data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --release --locked -p tessera-tools --bin tessera -- demo "$@"
