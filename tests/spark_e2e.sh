#!/usr/bin/env bash
# Real Spark end-to-end test: shuffle-janitor next to a Spark standalone cluster with dynamic
# allocation and the external shuffle service, scraped by a real Prometheus. The scenario and
# its checks are in tests/spark_e2e.py; this script gets what it needs and runs it.
#
# Usage: [PYSPARK_VERSION=3.5.9] tests/spark_e2e.sh [BINARY]
#   BINARY defaults to target/debug/shuffle-janitor (built with `cargo build --locked` if missing).
# Needs: Java 17 (the machine's, else Debian's openjdk-17-jre-headless), Debian's prometheus
# (installed when missing, as root), pyspark from PyPI in a venv cached across runs under
# $SPARK_E2E_CACHE (default /var/cache/shuffle-janitor-ci, keyed by pyspark version; rebuilt
# when it does not work). Extra options are passed to tests/spark_e2e.py (--keep keeps the temp
# dir, --max-age/--min-age/--interval change the janitor's ages).
# As root, the scenario runs in a network namespace of its own with only loopback up: Spark's
# shuffle service binds all addresses and has no setting to change that.
set -euo pipefail

# The version tests/fixtures were recorded from; .ci/run also runs it with the last 3.5 (the
# liveness rule must hold on both lines of executor start-up code).
PYSPARK_VERSION=${PYSPARK_VERSION:-4.3.0}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

say() { echo "spark_e2e.sh: $*"; }
fail() {
    echo "spark_e2e.sh: $*" >&2
    echo "spark_e2e: 0 passed, 1 failed"
    exit 1
}
is_root() { [[ $(id -u) == 0 ]]; }
apt_updated=
apt_install() {
    is_root || fail "$* missing, and only root can install it (apt-get install $*)"
    [[ -n $apt_updated ]] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
started=$SECONDS

# --- the janitor ---------------------------------------------------------------------------
bin=${1:-target/debug/shuffle-janitor}
[[ $# -gt 0 ]] && shift
if [[ ! -x $bin && $bin == target/debug/shuffle-janitor ]]; then
    say "building $bin"
    cargo build --locked
fi
[[ -x $bin ]] || fail "$bin is not an executable file"
bin=$(realpath "$bin")

# --- Java 17 -------------------------------------------------------------------------------
java17() { [[ -x $1/bin/java ]] && "$1/bin/java" -version 2>&1 | grep -q 'version "17[."]'; }
find_java17() {
    local c
    for c in "${JAVA_HOME:-}" "$(dirname "$(dirname "$(readlink -f "$(command -v java || echo /nonexistent)")")")" \
        /usr/lib/jvm/java-17-openjdk-*; do
        [[ -n $c ]] && java17 "$c" && { echo "$c"; return 0; }
    done
    return 1
}
java_home=$(find_java17) || { apt_install openjdk-17-jre-headless && java_home=$(find_java17); } ||
    fail "no Java 17 found (JAVA_HOME, java on PATH, /usr/lib/jvm/java-17-openjdk-*)"
export JAVA_HOME=$java_home PATH=$java_home/bin:$PATH

# --- Prometheus ----------------------------------------------------------------------------
command -v prometheus >/dev/null 2>&1 || apt_install prometheus
prometheus=$(command -v prometheus) || fail "prometheus is not installed"

# --- pyspark, in a venv kept between runs --------------------------------------------------
cache=${SPARK_E2E_CACHE:-/var/cache/shuffle-janitor-ci}
mkdir -p "$cache" 2>/dev/null && [[ -w $cache ]] || cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/shuffle-janitor-ci
mkdir -p "$cache"
venv=$cache/venv-pyspark-$PYSPARK_VERSION
spark_home=$venv/lib/spark-home-unknown
venv_ok() {
    spark_home=$("$venv/bin/python" -c \
        "import os, pyspark; assert pyspark.__version__ == '$PYSPARK_VERSION'; print(os.path.dirname(pyspark.__file__))" \
        2>/dev/null) && [[ -x $spark_home/bin/spark-class ]]
}
# Two runs on one machine must not build the same venv at once.
exec 9>"$cache/.lock"
flock -w 600 9 || fail "$cache/.lock is held by another run"
if ! venv_ok; then
    say "creating $venv (pyspark $PYSPARK_VERSION from PyPI)"
    rm -rf "$venv"
    python3 -m venv "$venv" 2>/dev/null || { rm -rf "$venv" && apt_install python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install -q --disable-pip-version-check "pyspark==$PYSPARK_VERSION"
    venv_ok || fail "pyspark $PYSPARK_VERSION in $venv does not work"
else
    say "reusing $venv"
fi
exec 9>&-
say "ready in $((SECONDS - started))s: $(java -version 2>&1 | head -n1), pyspark $PYSPARK_VERSION, $("$prometheus" --version 2>&1 | head -n1)"

# --- the scenario --------------------------------------------------------------------------
cmd=("$venv/bin/python" "$here/tests/spark_e2e.py" --janitor "$bin" --spark-home "$spark_home"
    --python "$venv/bin/python" --prometheus "$prometheus" "$@")
# A backstop past the scenario's own deadline (500 s): SIGTERM makes it stop what it started.
guard=(timeout --kill-after=30 560)
if is_root && command -v unshare >/dev/null && command -v ip >/dev/null && unshare --net true 2>/dev/null; then
    say "running in a private network namespace (loopback only)"
    exec "${guard[@]}" unshare --net -- bash -c 'ip link set lo up && exec "$@"' _ "${cmd[@]}"
else
    say "no private network namespace (needs root, unshare and ip): services bind 127.0.0.1, but" \
        "Spark's shuffle service listens on all addresses"
    exec "${guard[@]}" "${cmd[@]}"
fi
