#!/usr/bin/env bash
# The long soak of the adversarial suite (scenario 9): `tests/hostile/soak.sh --minutes 60`.
# CI runs the 5-minute version as part of `cargo test --test hostile`.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=60
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes=$2; shift 2 ;;
        *) echo "usage: $0 [--minutes N]" >&2; exit 2 ;;
    esac
done
HOSTILE_SOAK_MINUTES=$minutes exec cargo test --locked --test hostile -- soak
