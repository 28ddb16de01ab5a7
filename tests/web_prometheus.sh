#!/usr/bin/env bash
# A real Prometheus scrapes the daemon over TLS with a client certificate and basic auth
# (--web.config.file, the exporter toolkit's format), and the scrapes that must fail do: no
# password, a wrong password, a CA that did not sign the daemon's certificate, no client
# certificate. Loopback only; certificates by openssl, the bcrypt hash by htpasswd, both here.
#
# Usage: tests/web_prometheus.sh [BINARY]   (default target/debug/shuffle-janitor)
# Needs: Debian's prometheus, openssl, apache2-utils (htpasswd), curl; installed when missing,
# as root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

say() { echo "web_prometheus.sh: $*"; }
fail() {
    echo "web_prometheus.sh: FAILED: $*" >&2
    [[ -n ${tmp:-} && -f $tmp/daemon.log ]] && { echo "--- daemon log" >&2; tail -n 30 "$tmp/daemon.log" >&2; }
    [[ -n ${tmp:-} && -f $tmp/prometheus.log ]] && { echo "--- prometheus log" >&2; tail -n 30 "$tmp/prometheus.log" >&2; }
    exit 1
}
apt_updated=
apt_install() {
    [[ $(id -u) == 0 ]] || fail "$* missing, and only root can install it (apt-get install $*)"
    [[ -n $apt_updated ]] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
command -v prometheus >/dev/null || apt_install prometheus
command -v openssl >/dev/null || apt_install openssl
command -v htpasswd >/dev/null || apt_install apache2-utils
command -v curl >/dev/null || apt_install curl

bin=${1:-target/debug/shuffle-janitor}
if [[ ! -x $bin && $bin == target/debug/shuffle-janitor ]]; then
    cargo build --locked
fi
[[ -x $bin ]] || fail "$bin is not an executable file"
bin=$(realpath "$bin")

tmp=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- certificates: ca signs the daemon, clients-ca the scraper, other-ca nothing -----------
mkdir -p "$tmp/pki" "$tmp/local" "$tmp/prometheus-data"
cd "$tmp/pki"
ca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=$1" \
        -keyout "$1.key" -out "$1.crt" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign 2>/dev/null
}
cert() { # CA NAME EXTENSIONS
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$2" \
        -keyout "$2.key" -out "$2.csr" 2>/dev/null
    printf '%b' "$3" >"$2.ext"
    openssl x509 -req -in "$2.csr" -CA "$1.crt" -CAkey "$1.key" -CAcreateserial -days 2 \
        -out "$2.crt" -extfile "$2.ext" 2>/dev/null
}
ca ca && ca clients-ca && ca other-ca
cert ca server 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
cert clients-ca client 'extendedKeyUsage=clientAuth\n'
hash=$(htpasswd -nbBC 10 prometheus s3cret | cut -d: -f2-)
cd "$here"

# --- the daemon ------------------------------------------------------------------------------
port=$(free_port)
cat >"$tmp/pki/web.yml" <<EOF
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: clients-ca.crt
  min_version: TLS12
basic_auth_users:
  prometheus: '$hash'
EOF
cat >"$tmp/config.toml" <<EOF
roots = ["$tmp/local"]
state_dir = ""
[metrics]
web_config_file = "$tmp/pki/web.yml"
EOF
"$bin" run --config "$tmp/config.toml" --web.listen-address "127.0.0.1:$port" >"$tmp/daemon.log" 2>&1 &
pids+=($!)

# --- Prometheus --------------------------------------------------------------------------------
prom_port=$(free_port)
job() { # NAME CA CLIENT_CERT(yes|no) PASSWORD
    local cert_lines="" auth_lines=""
    [[ $3 == yes ]] && cert_lines="
      cert_file: $tmp/pki/client.crt
      key_file: $tmp/pki/client.key"
    [[ -n $4 ]] && auth_lines="
    basic_auth:
      username: prometheus
      password: '$4'"
    cat <<EOF
  - job_name: $1
    scheme: https
    tls_config:
      ca_file: $tmp/pki/$2.crt
      server_name: localhost$cert_lines$auth_lines
    static_configs:
      - targets: ['127.0.0.1:$port']
EOF
}
{
    printf 'global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n'
    job good ca yes s3cret
    job no_password ca yes ""
    job wrong_password ca yes guess
    job wrong_ca other-ca yes s3cret
    job no_client_cert ca no s3cret
} >"$tmp/prometheus.yml"
promtool check config "$tmp/prometheus.yml" >/dev/null || fail "promtool refuses $tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus-data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)

query() { curl -fsS --get "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1"; }
# up per job, as "job=value" lines, once every job has been scraped at least once.
ups() { query up | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
for s in sorted(r, key=lambda s: s["metric"]["job"]):
    print("%s=%s" % (s["metric"]["job"], s["value"][1]))'; }
want='good=1
no_client_cert=0
no_password=0
wrong_ca=0
wrong_password=0'
got=
for _ in $(seq 1 60); do
    got=$(ups 2>/dev/null || true)
    [[ $got == "$want" ]] && break
    sleep 1
done
[[ $got == "$want" ]] || fail "Prometheus's up per job after 60s: $(echo "$got" | tr '\n' ' ')(want $(echo "$want" | tr '\n' ' '))"
say "up per job: $(echo "$got" | tr '\n' ' ')"
build=$(query 'shuffle_janitor_build_info{job="good"}')
grep -q '"version"' <<<"$build" || fail "no shuffle_janitor_build_info from the good job: $build"
# Each bad one failed for its own reason, as Prometheus saw it (its targets API): not a timeout.
curl -fsS "http://127.0.0.1:$prom_port/api/v1/targets" | python3 -c '
import json, sys
want = {"good": "", "no_password": "401 Unauthorized", "wrong_password": "401 Unauthorized",
        "wrong_ca": "certificate signed by unknown authority", "no_client_cert": "certificate required"}
bad = 0
for t in sorted(json.load(sys.stdin)["data"]["activeTargets"], key=lambda t: t["labels"]["job"]):
    job, err = t["labels"]["job"], t["lastError"]
    ok = (want[job] in err) if want[job] else err == ""
    bad += not ok
    print("web_prometheus.sh:   %-15s %-5s %s%s" % (job, t["health"], err[:100], "" if ok else "  <- expected " + want[job]))
sys.exit(1 if bad else 0)' || fail "a scrape failed for another reason than expected"
echo "web_prometheus: 1 passed, 0 failed"
