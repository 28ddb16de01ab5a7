#!/usr/bin/env bash
# Checks systemd/shuffle-janitor.service with systemd-analyze:
#   - `systemd-analyze verify` must say nothing about the unit (and succeed);
#   - `systemd-analyze security --offline=true` prints its remaining findings and exposure score.
#
# Usage: tests/systemd.sh [BINARY]
#   BINARY defaults to target/release/shuffle-janitor, else target/debug/shuffle-janitor.
# `verify` checks that ExecStart's binary exists, so the unit is copied to a temporary directory
# with ExecStart pointing at BINARY, and that copy is checked.
# Needs systemd-analyze (Debian: systemd) and /bin/kill for ExecReload= (Debian: procps).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
unit="$here/systemd/shuffle-janitor.service"
name=shuffle-janitor.service

fail() {
    echo "tests/systemd.sh: $*" >&2
    exit 1
}

command -v systemd-analyze >/dev/null 2>&1 ||
    fail "systemd-analyze not found: install it (Debian: apt-get install systemd)"
[[ -f $unit ]] || fail "$unit not found"

bin=${1:-}
if [[ -z $bin ]]; then
    for b in "$here/target/release/shuffle-janitor" "$here/target/debug/shuffle-janitor"; do
        if [[ -x $b ]]; then
            bin=$b
            break
        fi
    done
    [[ -n $bin ]] || fail "no binary in target/release or target/debug: build first or pass its path"
fi
[[ -f $bin && -x $bin ]] || fail "$bin is not an executable file"
bin=$(realpath "$bin")
# Kept to characters that need no quoting or escaping in ExecStart= (or in sed).
[[ $bin =~ ^[A-Za-z0-9._/+-]+$ ]] || fail "$bin: path has characters ExecStart= would need escaped"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
copy="$tmp/$name"
sed "s#^ExecStart=/usr/bin/shuffle-janitor #ExecStart=$bin #" "$unit" >"$copy"
grep -q "^ExecStart=$bin run " "$copy" ||
    fail "$unit: no 'ExecStart=/usr/bin/shuffle-janitor run ...' line to point at $bin"

export SYSTEMD_COLORS=0 SYSTEMD_PAGER=

echo "== systemd-analyze verify ($(systemd-analyze --version | head -n1), ExecStart=$bin)"
status=0
out=$(systemd-analyze verify "$copy" 2>&1) || status=$?
# On a build host verify may also complain about other installed units; only this unit counts.
ours=$(grep -F -e shuffle-janitor -e "$tmp" <<<"$out" || true)
others=$(grep -v -F -e shuffle-janitor -e "$tmp" <<<"$out" || true)
if [[ -n $others ]]; then
    echo "(ignored, not about $name:)"
    sed 's/^/    /' <<<"$others"
fi
if [[ -n $ours || $status -ne 0 ]]; then
    [[ -z $ours ]] || echo "$ours" >&2
    if grep -q 'Command /bin/kill is not executable' <<<"$ours"; then
        echo "(ExecReload= needs /bin/kill: Debian: apt-get install procps)" >&2
    fi
    fail "systemd-analyze verify reported problems with $name (exit status $status)"
fi
echo "ok: no warnings or errors about $name"

echo "== systemd-analyze security --offline=true"
sec=$(systemd-analyze security --no-pager --offline=true "$copy" 2>&1) || {
    echo "$sec" >&2
    fail "systemd-analyze security failed"
}
# Remaining findings (lines ending in an exposure value), worst first, then the score.
awk '/ [0-9]+\.[0-9]+$/ { print $NF "\t" $0 }' <<<"$sec" | sort -s -t$'\t' -k1,1rn | cut -f2-
grep -E 'Overall exposure level' <<<"$sec" || fail "no exposure level in systemd-analyze security output"
