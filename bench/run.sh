#!/usr/bin/env bash
# The benchmark against `find -delete`: builds the release binary and the tree generator, then
# runs bench/bench.py (see its --help). Needs /usr/bin/time (Debian: time) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --locked --bin shuffle-janitor --example gentree --example watchcost
exec python3 bench/bench.py "$@"
