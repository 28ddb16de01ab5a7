#!/usr/bin/env bash
# Everything under deploy/, and the release tarball, checked with the real tools this machine has
# (needs root: the Ansible role installs the package and creates a user):
#   1. every JSON and YAML file parses; the configs of the Marathon apps (embedded in the tarball
#      app, deploy/marathon/config.toml for the image app) and of the Kubernetes ConfigMap pass
#      `shuffle-janitor check-config`; their structure (one per agent, probes, capabilities,
#      hostPath roots, the image app's image and args as the DaemonSet's) is what the daemon
#      needs; the Kubernetes objects validate against the API's schemas (kubernetes-validate);
#   2. the Marathon tarball app's cmd runs for real in a fake sandbox (the tarball unpacked as
#      Mesos's fetcher would), drops to uid 65534 with three capabilities, and answers /-/healthy
#      (tests/image.sh runs the image app with podman);
#   3. promtool check rules and promtool test rules on the alerts; the dashboard's queries through
#      promtool, its fleet row's queries through promtool test rules on three nodes; the metric
#      names used by alerts, dashboard and README against a live daemon's /metrics (and promtool
#      check metrics on it);
#   4. scripts/release-tarball.sh: sha256sums.txt verifies, the contents, the binary runs, the man
#      pages are the generated ones and render without warnings nor backticks, the completions
#      complete a subcommand's options in bash, zsh and fish (tests/completions.sh), and the
#      archive is reproducible;
#   5. the Ansible role (ansible-core and ansible-lint from PyPI in a cached venv):
#      ansible-lint --profile production, meta/argument_specs.yml against defaults/main.yml and a
#      bad value refused by it before any task, ansible-galaxy install from requirements.yml
#      (a tarball and a git tag); then the role against localhost with
#      connection local, installing the .deb and then the tarball: the templated config through
#      check-config and compared key by key, a bad value refused by validate, a second run with
#      changed=0, an upgrade and a rollback, systemd-analyze verify on the unit with the role's
#      drop-ins; service management is SKIPPED (and said so) where systemd is not running;
#   6. the Puppet module with Debian's puppet: puppet-lint, parser validate, rspec-puppet, then
#      puppet apply on localhost (the package, the validated config), a second apply changing
#      nothing, a value check-config refuses and one the types refuse;
#      the Chef cookbook without Chef (not packaged in Debian): see tests/chef_check.rb.
# Everything installed is removed again at the end.
#
# Usage: tests/deploy.sh [DEB]
#   DEB defaults to target/debian/shuffle-janitor_<version>-1_<arch>.deb (static), built with cargo deb when
#   missing (tests/package.sh builds it first in CI).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export CARGO_TERM_COLOR=never SYSTEMD_COLORS=0 SYSTEMD_PAGER=

cache=/var/cache/shuffle-janitor-ci
# From PyPI, into a venv kept between runs (remade when this list changes).
requirements="ansible-core==2.19.14 ansible-lint==26.10.1 kubernetes-validate==1.37.0 pyyaml"
# Named after its requirements: a checkout with other requirements (another branch on the same
# machine) has its own venv instead of remaking this one while it is in use.
venv=$cache/venv-deploy-$(sha256sum <<<"$requirements" | cut -c1-12)
pkg=shuffle-janitor

fail() {
    echo "tests/deploy.sh: FAILED: $*" >&2
    exit 1
}
step() { echo "== $*"; }
ok() { echo "ok: $*"; }
timed() { echo "   ($(($(date +%s) - t0)) s)"; }

[[ $(id -u) -eq 0 ]] || fail "needs root (the Ansible role installs a package and creates a user)"
for tool in python3 dpkg tar sha256sum setpriv; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool not found"
done

apt_updated=
apt_install() {
    [[ -n $apt_updated ]] || {
        apt-get update -qq
        apt_updated=1
    }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

installed() {
    local s
    s=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) || return 1
    [[ -n $s && $s != not-installed ]]
}

# Everything the role can leave on the machine, removed whatever happened.
remove_role_leftovers() {
    if installed; then dpkg --purge "$pkg" >/dev/null 2>&1 || true; fi
    rm -rf /opt/shuffle-janitor /usr/local/bin/shuffle-janitor /etc/shuffle-janitor /etc/default/shuffle-janitor \
        /etc/systemd/system/shuffle-janitor.service /etc/systemd/system/shuffle-janitor.service.d
    if getent passwd shuffle-janitor >/dev/null; then userdel shuffle-janitor 2>/dev/null || true; fi
    if getent group shuffle-janitor >/dev/null; then groupdel shuffle-janitor 2>/dev/null || true; fi
}

tmp=$(mktemp -d)
pids=()
cleanup() {
    local status=$?
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
    [[ -z ${role_ran:-} ]] || remove_role_leftovers
    exit "$status"
}
trap cleanup EXIT

# --- Tools ------------------------------------------------------------------------------------
step "tools"
t0=$(date +%s)
# promtool: Debian's prometheus package.
command -v promtool >/dev/null 2>&1 || apt_install prometheus
v=$(promtool --version 2>&1)
echo "${v%%$'\n'*}"
# The Ansible apt module runs under the node's Python and needs python3-apt there.
/usr/bin/python3 -c 'import apt' 2>/dev/null || apt_install python3-apt
# ansible-core, ansible-lint, kubernetes-validate (the Kubernetes API's schemas) and PyYAML.
if [[ $(cat "$venv/requirements" 2>/dev/null) != "$requirements" ]] ||
    ! "$venv/bin/ansible-playbook" --version >/dev/null 2>&1 ||
    ! "$venv/bin/ansible-lint" --version >/dev/null 2>&1 ||
    ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
    echo "(creating $venv: $requirements, from PyPI)"
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --disable-pip-version-check $requirements
    echo "$requirements" >"$venv/requirements"
fi
v=$("$venv/bin/ansible-playbook" --version)
echo "${v%%$'\n'*}"
echo "kubernetes-validate $("$venv/bin/kubernetes-validate" --version)"
py=$venv/bin/python
checks() { "$py" tests/deploy_checks.py "$@"; }

version=$(awk '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' Cargo.toml)
# The commit build.rs stamps into --version (SHUFFLE_JANITOR_REVISION when set, as for a build without .git).
revision=${SHUFFLE_JANITOR_REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
arch=$(dpkg --print-architecture)
# The .deb and the tarball ship the static binary (scripts/build-static.sh's target and flags).
triple=$(rustc -vV | sed -n 's/^host: //p')
deb=${1:-target/debian/${pkg}_$version-1_$arch.deb}
# The man pages and completions that cargo deb and scripts/release-tarball.sh package.
cargo run --locked --quiet --example gen-assets >/dev/null || fail "examples/gen-assets failed"
if [[ ! -f $deb ]]; then
    echo "($deb missing: building it with cargo deb)"
    cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked --version '^3'
    RUSTFLAGS="-C target-feature=+crt-static" cargo deb --target "$triple" -- --locked >/dev/null
fi
[[ -f $deb ]] || fail "$deb not found"
# A copy, and the same build as a later revision to upgrade to (cargo deb empties target/debian
# when it writes elsewhere: the original is put back).
cp "$deb" "$tmp/"
mkdir "$tmp/upgrade"
cargo deb --target "$triple" --no-build --deb-revision 999 -o "$tmp/upgrade/" >/dev/null
mkdir -p "$(dirname "$deb")"
cp "$tmp/$(basename "$deb")" "$deb"
deb=$tmp/$(basename "$deb")
upgrade=$(echo "$tmp"/upgrade/*.deb)
# The static release binary (cargo deb built it).
bin=$here/$(scripts/build-static.sh --check 2>/dev/null || scripts/build-static.sh) || fail "no static binary"
timed

# --- 1. Parse, embedded configs, structure ----------------------------------------------------
step "deploy/: parse, embedded configs through check-config, structure"
t0=$(date +%s)
checks parse-all
checks marathon-config "$tmp/marathon.toml"
"$bin" check-config --config "$tmp/marathon.toml" >/dev/null || fail "check-config refused the Marathon tarball app's config"
ok "check-config accepts the config in deploy/marathon/shuffle-janitor-tarball.json"
checks marathon-check "$version" "$arch"
"$bin" check-config --config deploy/marathon/config.toml >/dev/null || fail "check-config refused deploy/marathon/config.toml"
ok "check-config accepts deploy/marathon/config.toml (the image app's config)"
checks marathon-image-check "$version"
checks k8s-config "$tmp/k8s.toml"
"$bin" check-config --config "$tmp/k8s.toml" >/dev/null || fail "check-config refused the Kubernetes ConfigMap's config"
ok "check-config accepts the ConfigMap's config.toml in deploy/kubernetes/daemonset.yaml"
checks k8s-check "$version"
# Against the API schemas of a current and an older Kubernetes; --strict refuses unknown fields.
for k in 1.37.0 1.28.0; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$k" deploy/kubernetes/daemonset.yaml ||
        fail "deploy/kubernetes/daemonset.yaml does not validate against Kubernetes $k"
done
ok "kubernetes-validate --strict: the ConfigMap and the DaemonSet are valid for Kubernetes 1.37 and 1.28"
timed

free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Waits for http://127.0.0.1:PORT/PATH to answer 200 while process PID lives.
wait_http() {
    local port=$1 path=$2 pid=$3
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 1
        if "$py" -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$port$path', timeout=2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
# A Spark block store with one fresh map output and one older than max_age.
mk_spark_tree() {
    local store=$1/blockmgr-4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f
    mkdir -p "$store/0a" "$store/1b"
    echo data >"$store/0a/shuffle_1_1_0.data"
    echo index >"$store/1b/shuffle_1_1_0.index"
    echo data >"$store/0a/shuffle_1_2_0.data"
    echo index >"$store/1b/shuffle_1_2_0.index"
    touch -d '-7 hours' "$store"/*/shuffle_1_2_0.*
}

# --- 2. The Marathon tarball app's cmd, for real --------------------------------------------------
step "the Marathon tarball app's cmd in a fake Mesos sandbox"
t0=$(date +%s)
scripts/release-tarball.sh --no-build "$tmp/dist" >/dev/null
if [[ $arch == amd64 ]]; then
    sandbox=$tmp/sandbox
    mkdir -p "$sandbox" "$tmp/mroot"
    chmod 0755 "$tmp"
    tar -xzf "$tmp/dist/shuffle-janitor-$version.linux-$arch.tar.gz" -C "$sandbox"
    mk_spark_tree "$tmp/mroot"
    port=$(free_port)
    # The app's own config, but for the roots and the port: a test must not sweep this machine's
    # /tmp, nor take the real port.
    "$py" - "$tmp/mroot" "$port" "$tmp/marathon-env" "$tmp/marathon-cmd" <<'EOF'
import json, re, shlex, sys
root, port, env_out, cmd_out = sys.argv[1:]
app = json.load(open("deploy/marathon/shuffle-janitor-tarball.json"))
cfg = app["env"]["SHUFFLE_JANITOR_CONFIG"]
cfg, n1 = re.subn(r"(?m)^roots = .*$", f'roots = ["{root}"]', cfg)
cfg, n2 = re.subn(r'(?m)^listen = ".*"$', f'listen = "127.0.0.1:{port}"', cfg)
# Nor write this machine's /var/lib.
state = root + "-state"
cfg, n3 = re.subn(r'(?m)^state_dir = ".*"$', f'state_dir = "{state}"', cfg)
assert n1 == 1 and n2 == 1 and n3 == 1, "roots, listen or state_dir not found in the Marathon config"
env = dict(app["env"], SHUFFLE_JANITOR_CONFIG=cfg, SHUFFLE_JANITOR_STATE_DIR=state)
open(env_out, "w").write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
open(cmd_out, "w").write(app["cmd"])
EOF
    (
        # shellcheck disable=SC1091
        source "$tmp/marathon-env"
        export MESOS_SANDBOX=$sandbox PORT0=$port
        cd "$sandbox"
        exec sh -c "$(cat "$tmp/marathon-cmd")"
    ) >"$tmp/marathon.log" 2>&1 &
    mpid=$!
    pids+=("$mpid")
    wait_http "$port" /-/healthy "$mpid" || { cat "$tmp/marathon.log" >&2; fail "the Marathon cmd did not answer /-/healthy"; }
    wait_http "$port" /-/ready "$mpid" || { cat "$tmp/marathon.log" >&2; fail "the Marathon cmd did not become ready"; }
    status=$(cat "/proc/$mpid/status")
    [[ $(awk '/^Uid:/ { print $2 }' <<<"$status") == 65534 ]] || fail "the Marathon task does not run as uid 65534"
    [[ $(awk '/^CapEff:/ { print $2 }' <<<"$status") == 000000000008000a ]] ||
        fail "the Marathon task's effective capabilities are $(awk '/^CapEff:/ { print $2 }' <<<"$status"), not DAC_OVERRIDE FOWNER SYS_PTRACE"
    # Its startup sweep judges the tree by the app's config: the fresh unit is young; the unit
    # back-dated 7 h is past max_age (6h), but `touch -d` moved its ctime to now, so its
    # timestamps cannot prove it unread and a daemon that has not watched it for max_age keeps it
    # (`unwatched`; docs/safety.md).
    for _ in $(seq 50); do
        "$py" -c "import urllib.request; open('$tmp/mmetrics.txt', 'wb').write(urllib.request.urlopen('http://127.0.0.1:$port/metrics').read())"
        grep -q '^shuffle_janitor_skipped_files_total{reason="unwatched"} 2$' "$tmp/mmetrics.txt" && break
        sleep 0.1
    done
    grep -q '^shuffle_janitor_skipped_files_total{reason="unwatched"} 2$' "$tmp/mmetrics.txt" &&
        grep -q '^shuffle_janitor_skipped_files_total{reason="young"} 2$' "$tmp/mmetrics.txt" ||
        fail "the Marathon task's startup sweep did not judge 2 files young and 2 unwatched: $(grep skipped_files "$tmp/mmetrics.txt")"
    left=$(cd "$tmp/mroot" && find . -type f | sort | tr '\n' ' ')
    [[ $(wc -w <<<"$left") -eq 4 ]] || fail "the Marathon task's startup sweep deleted files: $left left"
    kill -TERM "$mpid"
    wait "$mpid" || fail "the Marathon task did not exit 0 on SIGTERM: $(tail -n 5 "$tmp/marathon.log")"
    [[ $(stat -c %u:%a "$tmp/mroot-state") == 65534:700 && -s $tmp/mroot-state/opens.json ]] ||
        fail "the Marathon task's state_dir: $(stat -c %u:%a "$tmp/mroot-state"), $(ls -la "$tmp/mroot-state")"
    ok "runs the fetched binary as uid 65534 with DAC_OVERRIDE FOWNER SYS_PTRACE, healthy, ready, sweeps by the app's config, saves its state, stops on SIGTERM"
else
    echo "SKIPPED running the Marathon cmd: it names the linux-amd64 tarball and this machine is $arch"
fi
timed

# --- 3. Prometheus: rules, rule tests, dashboard queries, metric names -------------------------
step "promtool check rules / test rules"
t0=$(date +%s)
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts_test.yml)
checks dashboard-check "$tmp/dashboard-rules.yml"
promtool check rules "$tmp/dashboard-rules.yml" >/dev/null ||
    { promtool check rules "$tmp/dashboard-rules.yml" >&2 || true; fail "a dashboard query does not parse"; }
ok "every dashboard query parses (promtool)"
checks dashboard-fleet-test "$tmp/fleet.yml" "$tmp/fleet_test.yml"
(cd "$tmp" && promtool test rules fleet_test.yml) || fail "the dashboard's fleet queries do not give the expected values"

step "metric names against a live daemon's /metrics"
mkdir -p "$tmp/droot"
mk_spark_tree "$tmp/droot"
port=$(free_port)
printf 'roots = ["%s"]\n[metrics]\nlisten = "127.0.0.1:%s"\n' "$tmp/droot" "$port" >"$tmp/daemon.toml"
"$bin" run --config "$tmp/daemon.toml" >"$tmp/daemon.log" 2>&1 &
dpid=$!
pids+=("$dpid")
wait_http "$port" /-/ready "$dpid" || { cat "$tmp/daemon.log" >&2; fail "the daemon did not become ready"; }
for _ in $(seq 100); do
    "$py" -c "import urllib.request; open('$tmp/metrics.txt', 'wb').write(urllib.request.urlopen('http://127.0.0.1:$port/metrics').read())"
    grep -q '^shuffle_janitor_last_sweep_timestamp_seconds [1-9]' "$tmp/metrics.txt" && break
    sleep 0.1
done
kill -TERM "$dpid"
wait "$dpid" || true
grep -q '^shuffle_janitor_last_sweep_timestamp_seconds [1-9]' "$tmp/metrics.txt" || fail "no sweep ended in the daemon"
promtool check metrics <"$tmp/metrics.txt" || fail "promtool check metrics found problems in /metrics"
ok "promtool check metrics: /metrics is clean"
checks metrics-check "$tmp/metrics.txt"
timed

# --- 4. Release tarball -----------------------------------------------------------------------
step "release tarball (scripts/release-tarball.sh)"
t0=$(date +%s)
name=shuffle-janitor-$version.linux-$arch
dist=$tmp/dist
(cd "$dist" && sha256sum -c sha256sums.txt) || fail "sha256sums.txt does not verify"
[[ $(wc -l <"$dist/sha256sums.txt") -eq 1 ]] || fail "sha256sums.txt should list the one tarball"
tar -tzf "$dist/$name.tar.gz" | sort >"$tmp/tar-list"
printf '%s\n' "$name/" "$name/CHANGELOG.md" "$name/LICENSE" "$name/README.md" "$name/config.toml" "$name/shuffle-janitor" \
    "$name/shuffle-janitor.service" "$name/man/" "$name/man/shuffle-janitor.8" "$name/man/shuffle-janitor.toml.5" \
    "$name/completions/" "$name/completions/shuffle-janitor.bash" "$name/completions/_shuffle-janitor" \
    "$name/completions/shuffle-janitor.fish" "$name/docs/" $(for page in docs/*.md; do echo "$name/$page"; done) | sort | diff -u - "$tmp/tar-list" || fail "the tarball's contents differ"
mkdir "$tmp/unpacked"
tar -xzf "$dist/$name.tar.gz" -C "$tmp/unpacked"
[[ $("$tmp/unpacked/$name/shuffle-janitor" --version) == "shuffle-janitor $version (revision $revision, rustc "*")" ]] || fail "the tarball's binary --version"
# static-pie (scripts/build-static.sh says why): ldd says "statically linked".
lddout=$(ldd "$tmp/unpacked/$name/shuffle-janitor" 2>&1 || true)
[[ $lddout == *"statically linked"* ]] || fail "the tarball's binary is dynamically linked: $lddout"
"$tmp/unpacked/$name/shuffle-janitor" check-config --config "$tmp/unpacked/$name/config.toml" >/dev/null ||
    fail "check-config refused the tarball's config.toml"
cmp -s "$tmp/unpacked/$name/shuffle-janitor.service" systemd/shuffle-janitor.service || fail "the tarball's unit differs"
for page in man/shuffle-janitor.8 man/shuffle-janitor.toml.5; do
    cmp -s "$tmp/unpacked/$name/$page" "target/assets/$page" || fail "the tarball's $page is not the generated one"
    if command -v man >/dev/null 2>&1; then
        warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$tmp/unpacked/$name/$page" 2>&1 >/dev/null)
        [[ -z $warnings ]] || fail "man -l $page (from the tarball) warns: $warnings"
    fi
done
bash -n "$tmp/unpacked/$name/completions/shuffle-janitor.bash" || fail "the tarball's bash completion: syntax"
# No Markdown backtick may reach a rendered page (groff shows ` as a quotation mark).
for page in man/shuffle-janitor.8 man/shuffle-janitor.toml.5; do
    if command -v man >/dev/null 2>&1; then
        ticks=$(LC_ALL=C.UTF-8 MANWIDTH=80 MANPAGER=cat man -l "$tmp/unpacked/$name/$page" 2>/dev/null | grep -n -e '`' -e $'\xe2\x80\x98' || true)
        [[ -z $ticks ]] || fail "$page renders backticks (Markdown code spans): $ticks"
    fi
done
# The completions in real shells: a subcommand's options (`sweep --<TAB>`), not only its name.
command -v zsh >/dev/null 2>&1 || apt_install zsh
command -v fish >/dev/null 2>&1 || apt_install fish
c=$tmp/unpacked/$name/completions
bash tests/completions.sh "$c/shuffle-janitor.bash" "$c/_shuffle-janitor" "$c/shuffle-janitor.fish" || fail "the tarball's completions"
sum1=$(cat "$dist/sha256sums.txt")
scripts/release-tarball.sh --no-build "$dist" >/dev/null
[[ $(cat "$dist/sha256sums.txt") == "$sum1" ]] || fail "a second build of the tarball differs: not reproducible"
ok "$name.tar.gz: checksum verifies, static binary, config, unit, man pages, completions, CHANGELOG, LICENSE, README; --version, check-config, man -l; reproducible"
timed

# --- 5. The Ansible role against localhost ----------------------------------------------------
if installed || [[ -e /usr/local/bin/shuffle-janitor || -e /etc/shuffle-janitor ]]; then
    echo "(shuffle-janitor is on this machine already, left over from an earlier run? removing it first)"
    remove_role_leftovers
fi
role_ran=1
export ANSIBLE_ROLES_PATH=$here/deploy/ansible/roles ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 \
    ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_INVENTORY_UNPARSED_WARNING=False ANSIBLE_RETRY_FILES_ENABLED=False \
    ANSIBLE_HOME=$tmp/ansible-home ANSIBLE_LOCAL_TEMP=$tmp/ansible-local ANSIBLE_REMOTE_TEMP=$tmp/ansible-remote
# Every config key away from its default, so the comparison shows each one is templated.
cat >"$tmp/vars.json" <<'EOF'
{"shuffle_janitor_roots": ["/tmp", "/data*/spark"], "shuffle_janitor_max_age": "4h", "shuffle_janitor_min_age": "20m",
 "shuffle_janitor_age_basis": ["mtime"], "shuffle_janitor_kinds": ["shuffle", "temp", "broadcast"],
 "shuffle_janitor_protect": ["/tmp/keep/**"], "shuffle_janitor_interval": "5m", "shuffle_janitor_dry_run": true,
 "shuffle_janitor_skip_open_files": false, "shuffle_janitor_watermark_high": 0.9, "shuffle_janitor_watermark_low": 0.8,
 "shuffle_janitor_watermark_poll": "10s", "shuffle_janitor_metrics_listen": "127.0.0.1:19338",
 "shuffle_janitor_rescan_interval": "12h", "shuffle_janitor_state_dir": "/var/tmp/shuffle-janitor-state",
 "shuffle_janitor_stores_reap": false, "shuffle_janitor_stores_min_idle": "20h",
 "shuffle_janitor_stores_executor_startup": "5m",
 "shuffle_janitor_args": "--log-format json", "shuffle_janitor_read_write_paths": ["-/data1", "-/data2"]}
EOF
# Runs deploy/ansible/playbook.yml on localhost; prints the output; "changed=N" of the recap in $changed.
play() {
    local log=$tmp/play.log status=0
    "$venv/bin/ansible-playbook" -i localhost, -c local -e ansible_python_interpreter=/usr/bin/python3 \
        -e shuffle_janitor_hosts=localhost -e @"$tmp/vars.json" "$@" deploy/ansible/playbook.yml >"$log" 2>&1 || status=$?
    grep -E '^(TASK|RUNNING HANDLER|changed|fatal|failed)|SKIPPED|PLAY RECAP|localhost +:' "$log" | sed 's/^/    /'
    changed=$(sed -n 's/^localhost *: .*changed=\([0-9]*\).*/\1/p' "$log")
    return "$status"
}
check_role_result() { # BIN UNIT
    local b=$1 unit=$2
    [[ $("$b" --version) == "shuffle-janitor $version (revision $revision, rustc "*")" ]] || fail "ansible: $b --version"
    "$b" check-config --config /etc/shuffle-janitor/config.toml >"$tmp/effective.toml" ||
        fail "ansible: check-config refused the templated /etc/shuffle-janitor/config.toml"
    checks compare-config "$tmp/effective.toml" "$tmp/vars.json"
    grep -qx "SHUFFLE_JANITOR_ARGS='--log-format json'" /etc/default/shuffle-janitor || fail "ansible: /etc/default/shuffle-janitor"
    grep -qx 'ReadWritePaths=-/data1 -/data2' /etc/systemd/system/shuffle-janitor.service.d/20-read-write-paths.conf ||
        fail "ansible: the ReadWritePaths= drop-in"
    getent passwd shuffle-janitor >/dev/null || fail "ansible: no user shuffle-janitor"
    if command -v systemd-analyze >/dev/null 2>&1; then
        local va status=0
        va=$(systemd-analyze verify "$unit" 2>&1) || status=$?
        if grep -qF shuffle-janitor <<<"$va" || [[ $status -ne 0 ]]; then
            echo "$va" >&2
            fail "ansible: systemd-analyze verify $unit (with the role's drop-ins) reported problems"
        fi
        ok "systemd-analyze verify: $unit with the role's drop-ins is clean"
    fi
}
say_service_skipped() {
    if [[ -d /run/systemd/system ]]; then
        ok "systemd runs here: the role enabled, started and reloaded the service"
        systemctl is-active --quiet shuffle-janitor.service || fail "ansible: shuffle-janitor.service is not active"
    else
        grep -q 'service management SKIPPED' "$tmp/play.log" || fail "ansible: the role did not say it skipped service management"
        echo "SKIPPED service management in the Ansible role: systemd is not running here (no /run/systemd/system); the role said so"
    fi
}

step "Ansible role: ansible-lint, argument spec, requirements.yml"
t0=$(date +%s)
# --offline: no Galaxy (the role needs no collection beyond ansible.builtin); PATH: ansible-lint
# runs ansible-playbook --syntax-check from the venv.
(cd deploy/ansible && PATH=$venv/bin:$PATH "$venv/bin/ansible-lint" --offline --nocolor --profile production \
    playbook.yml roles/shuffle_janitor) >"$tmp/lint.log" 2>&1 || { cat "$tmp/lint.log" >&2; fail "ansible-lint --profile production"; }
ok "ansible-lint --profile production: $(grep -o 'Passed: .*' "$tmp/lint.log")"
checks argspec-defaults
# A bad value is refused by the argument spec, before any of the role's tasks (nothing installed).
if play -e shuffle_janitor_deb=/nonexistent.deb -e '{"shuffle_janitor_kinds": ["shuffle", "shufle"]}'; then
    fail "ansible: shuffle_janitor_kinds [shuffle, shufle] was accepted"
fi
grep -q 'value of shuffle_janitor_kinds must be one or more of: .* Got no match for: shufle' "$tmp/play.log" ||
    fail "ansible: the argument spec's refusal does not name shuffle_janitor_kinds and the bad value"
tasks=$(grep '^TASK \[' "$tmp/play.log" | grep -cv -e 'Gathering Facts' -e 'Validating arguments against arg spec' || true)
[[ $tasks -eq 0 ]] || fail "ansible: $tasks of the role's tasks ran before the argument spec refused the value"
ok "the argument spec refuses shuffle_janitor_kinds [shuffle, shufle] before any task, naming it"
# The extra arguments for issue 25's flags, rendered without a run (the binary here has no such flags yet).
"$venv/bin/ansible" localhost -c local -m ansible.builtin.debug -e @deploy/ansible/roles/shuffle_janitor/defaults/main.yml \
    -e '{"shuffle_janitor_args": "--log-format json"}' -e shuffle_janitor_web_listen_address='[::1]:19339' \
    -e shuffle_janitor_web_config_file=/etc/shuffle-janitor/web.yml \
    -a "msg={{ lookup('ansible.builtin.template', '$here/deploy/ansible/roles/shuffle_janitor/templates/default.j2') }}" >"$tmp/default.log" 2>&1 ||
    { cat "$tmp/default.log" >&2; fail "ansible: rendering templates/default.j2"; }
grep -qF "SHUFFLE_JANITOR_ARGS='--log-format json --web.listen-address=[::1]:19339 --web.config.file=/etc/shuffle-janitor/web.yml'" "$tmp/default.log" ||
    { cat "$tmp/default.log" >&2; fail "ansible: /etc/default/shuffle-janitor does not pass --web.listen-address and --web.config.file"; }
ok "shuffle_janitor_web_listen_address and shuffle_janitor_web_config_file become --web.listen-address= and --web.config.file="
# The README's requirements.yml forms: a tarball of the role, and a git repository holding it.
tar -czf "$tmp/shuffle_janitor-$version.tar.gz" -C deploy/ansible/roles shuffle_janitor
git init -q "$tmp/role-git"
cp -r deploy/ansible/roles/shuffle_janitor/. "$tmp/role-git/"
git -C "$tmp/role-git" add -A
git -C "$tmp/role-git" -c user.name=ci -c user.email=ci@localhost commit -qm role
git -C "$tmp/role-git" tag "v$version"
printf -- '---\nroles:\n  - name: shuffle_janitor\n    src: %s\n' "$tmp/shuffle_janitor-$version.tar.gz" >"$tmp/req-tar.yml"
printf -- '---\nroles:\n  - name: shuffle_janitor\n    src: git+file://%s\n    version: v%s\n' "$tmp/role-git" "$version" >"$tmp/req-git.yml"
for r in tar git; do
    "$venv/bin/ansible-galaxy" role install -r "$tmp/req-$r.yml" -p "$tmp/galaxy-$r" >"$tmp/galaxy.log" 2>&1 ||
        { cat "$tmp/galaxy.log" >&2; fail "ansible-galaxy role install -r requirements.yml ($r)"; }
    diff -r -x .git -x .galaxy_install_info deploy/ansible/roles/shuffle_janitor "$tmp/galaxy-$r/shuffle_janitor" ||
        fail "ansible-galaxy installed a different role ($r)"
done
ok "ansible-galaxy role install -r requirements.yml: from a tarball and from a git tag"
timed

step "Ansible role, install method deb ($(basename "$deb"))"
t0=$(date +%s)
play -e shuffle_janitor_install_method=deb -e shuffle_janitor_deb="$deb" || fail "ansible-playbook failed (deb)"
installed || fail "ansible: the package is not installed"
check_role_result /usr/bin/shuffle-janitor /lib/systemd/system/shuffle-janitor.service
say_service_skipped
sum=$(sha256sum /etc/shuffle-janitor/config.toml)
echo "(the next run must fail: watermark.low 0.95 is above watermark.high 0.9)"
if play -e shuffle_janitor_install_method=deb -e shuffle_janitor_deb="$deb" -e shuffle_janitor_watermark_low=0.95; then
    fail "ansible: watermark.low 0.95 above high 0.9 was accepted"
fi
grep -q 'must be below watermark.high' "$tmp/play.log" || fail "ansible: the refusal does not name the problem"
[[ $(sha256sum /etc/shuffle-janitor/config.toml) == "$sum" ]] || fail "ansible: a refused config replaced the old one"
ok "a bad value is refused by validate (check-config), and the config in place is kept"
play -e shuffle_janitor_install_method=deb -e shuffle_janitor_deb="$deb" || fail "ansible-playbook failed (deb, second run)"
[[ $changed == 0 ]] || fail "ansible: the second run changed $changed things (not idempotent)"
ok "second run: changed=0"
play -e shuffle_janitor_install_method=deb -e shuffle_janitor_deb="$upgrade" >/dev/null || fail "ansible: upgrade to $(basename "$upgrade")"
[[ $(dpkg-query -W -f='${Version}' "$pkg") == *-999 ]] || fail "ansible: the upgrade did not install revision 999"
if play -e shuffle_janitor_install_method=deb -e shuffle_janitor_deb="$deb" >/dev/null; then
    fail "ansible: a downgrade went through without shuffle_janitor_allow_downgrade"
fi
play -e shuffle_janitor_install_method=deb -e shuffle_janitor_deb="$deb" -e shuffle_janitor_allow_downgrade=true >/dev/null ||
    fail "ansible: rollback with shuffle_janitor_allow_downgrade=true"
[[ $(dpkg-query -W -f='${Version}' "$pkg") == "$(dpkg-deb -f "$deb" Version)" ]] || fail "ansible: the rollback did not install $(basename "$deb")"
checks compare-config <(shuffle-janitor check-config --config /etc/shuffle-janitor/config.toml) "$tmp/vars.json" >/dev/null ||
    fail "ansible: the config changed across upgrade and rollback"
ok "upgrade to revision 999, refused downgrade, rollback with shuffle_janitor_allow_downgrade; config kept"
remove_role_leftovers
timed

step "Ansible role, install method tarball ($name.tar.gz)"
t0=$(date +%s)
tarball=$dist/$name.tar.gz
play -e shuffle_janitor_install_method=tarball -e shuffle_janitor_tarball="$tarball" || fail "ansible-playbook failed (tarball)"
installed && fail "ansible: the tarball method installed the package"
check_role_result /usr/local/bin/shuffle-janitor /etc/systemd/system/shuffle-janitor.service
grep -qx 'ExecStart=/usr/local/bin/shuffle-janitor run --config /etc/shuffle-janitor/config.toml $SHUFFLE_JANITOR_ARGS' \
    /etc/systemd/system/shuffle-janitor.service.d/10-exec-start.conf || fail "ansible: the ExecStart= drop-in"
say_service_skipped
play -e shuffle_janitor_install_method=tarball -e shuffle_janitor_tarball="$tarball" || fail "ansible-playbook failed (tarball, second run)"
[[ $changed == 0 ]] || fail "ansible: the second tarball run changed $changed things (not idempotent)"
ok "second run: changed=0"
remove_role_leftovers
role_ran=
for f in /usr/local/bin/shuffle-janitor /opt/shuffle-janitor /etc/shuffle-janitor /etc/systemd/system/shuffle-janitor.service; do
    [[ ! -e $f ]] || fail "cleanup left $f"
done
getent passwd shuffle-janitor >/dev/null && fail "cleanup left the user shuffle-janitor"
timed

# --- 6. Puppet and Chef ----------------------------------------------------------------------
step "Puppet module (deploy/puppet/shuffle_janitor): puppet-lint, parser validate, rspec-puppet"
t0=$(date +%s)
pmod=deploy/puppet/shuffle_janitor
# Debian's puppet, puppet-lint and rspec-puppet (the module depends on no other module).
command -v puppet >/dev/null 2>&1 || apt_install puppet
command -v puppet-lint >/dev/null 2>&1 || apt_install puppet-lint
gem list -i rspec-puppet >/dev/null 2>&1 || apt_install ruby-rspec-puppet
puppet --version
puppet-lint --fail-on-warnings "$pmod" || fail "puppet-lint found problems in $pmod"
ok "puppet-lint --fail-on-warnings: clean"
puppet parser validate "$pmod"/manifests/*.pp "$pmod"/types/*.pp "$pmod"/functions/*.pp || fail "puppet parser validate"
for f in "$pmod"/templates/*.epp; do puppet epp validate "$f" || fail "puppet epp validate $f"; done
"$py" -c 'import json, sys; m = json.load(open(sys.argv[1])); assert m["dependencies"] == [] and m["operatingsystem_support"], m' \
    "$pmod/metadata.json" || fail "$pmod/metadata.json"
ok "puppet parser validate, epp validate, metadata.json"
(cd "$pmod" && rspec --no-color spec) >"$tmp/rspec.log" 2>&1 || { cat "$tmp/rspec.log" >&2; fail "rspec-puppet"; }
ok "rspec-puppet: $(grep -E '^[0-9]+ examples' "$tmp/rspec.log")"
timed

step "Puppet module with puppet apply on localhost"
t0=$(date +%s)
role_ran=1
# `puppet apply` on the class with the test values; exit status 2: changes, 0: none, 1/4/6: failures.
papply() {
    echo "class { 'shuffle_janitor': install_method => 'deb', package_file => '$deb', max_age => '4h', dry_run => true, watermark_high => 0.9, $1 }" >"$tmp/site.pp"
    local status=0
    # (Facter cannot read this sandbox's /proc/1/environ as root: noise, filtered.)
    puppet apply --modulepath "$here/deploy/puppet" --detailed-exitcodes --color=false "$tmp/site.pp" >"$tmp/puppet.log" 2>&1 || status=$?
    grep -v 'proc/1/environ' "$tmp/puppet.log" | sed 's/^/    /'
    return "$status"
}
status=0; papply "roots => ['/tmp', '/data*/spark']" || status=$?
[[ $status -eq 2 ]] || fail "puppet apply: exit status $status, expected 2 (changes, no failure)"
installed || fail "puppet: the package is not installed"
shuffle-janitor check-config --config /etc/shuffle-janitor/config.toml >"$tmp/effective.toml" || fail "puppet: check-config"
grep -qx 'max_age = "4h"' "$tmp/effective.toml" && grep -qx 'roots = \["/tmp", "/data\*/spark"\]' "$tmp/effective.toml" &&
    grep -qx 'high = 0.9' "$tmp/effective.toml" && grep -qx 'dry_run = true' "$tmp/effective.toml" ||
    fail "puppet: the config does not have the class's values: $(cat "$tmp/effective.toml")"
if [[ -d /run/systemd/system ]]; then
    systemctl is-active --quiet shuffle-janitor.service || fail "puppet: the service is not running"
else
    grep -q 'service management skipped' "$tmp/puppet.log" || fail "puppet: did not say it skipped the service"
    echo "SKIPPED service management in the Puppet class: systemd is not running here; the class said so"
fi
status=0; papply "roots => ['/tmp', '/data*/spark']" || status=$?
[[ $status -eq 0 ]] || fail "puppet apply, second run: exit status $status, expected 0 (no change)"
ok "puppet apply: package and config, then a second run with no change"
sum=$(sha256sum /etc/shuffle-janitor/config.toml)
# The types pass /etc (an absolute path); check-config refuses a system directory as a root.
echo "(the next apply must fail: check-config refuses the root /etc)"
status=0; papply "roots => ['/etc']" || status=$?
[[ $status -eq 4 || $status -eq 6 ]] || fail "puppet: the root /etc was not refused by check-config (exit $status)"
grep -q 'roots ("/etc")' "$tmp/puppet.log" || fail "puppet: the refusal does not name the key"
[[ $(sha256sum /etc/shuffle-janitor/config.toml) == "$sum" ]] || fail "puppet: a refused config replaced the old one"
ok "puppet: a value check-config refuses fails validate_cmd, the config in place is kept"
echo "(the next apply must fail at compile time: watermark_low 0.95 is above watermark_high 0.9)"
status=0; papply "watermark_low => 0.95" || status=$?
[[ $status -eq 1 ]] || fail "puppet: watermark_low 0.95 above watermark_high 0.9 was not refused at compile time (exit $status)"
grep -q 'watermark_low (0.95) must be below watermark_high (0.9)' "$tmp/puppet.log" || fail "puppet: the refusal does not name the parameters"
ok "puppet: watermark_low above watermark_high refused when the catalog compiles"
remove_role_leftovers
role_ran=
timed

step "Chef cookbook (deploy/chef/shuffle_janitor), without Chef"
t0=$(date +%s)
# Chef is not packaged in Debian: tests/chef_check.rb checks with Debian's Ruby what it can.
ruby tests/chef_check.rb syntax || fail "chef: syntax"
ruby tests/chef_check.rb resources || fail "chef: resources"
ruby tests/chef_check.rb render "$tmp/chef-default.toml" || fail "chef: rendering with the default attributes"
"$bin" check-config --config "$tmp/chef-default.toml" >"$tmp/chef-effective.toml" || fail "chef: check-config refused the config rendered with the default attributes"
diff -u <("$bin" check-config --config /dev/null | grep -v '^#') <(grep -v '^#' "$tmp/chef-effective.toml") || fail "chef: the default attributes are not the daemon's defaults"
ok "chef: config.toml.erb with the default attributes passes check-config and equals the daemon's defaults"
# The Ansible role's test values: every key away from its default.
ruby tests/chef_check.rb render "$tmp/chef-full.toml" "$tmp/vars.json" || fail "chef: rendering with a full set of attributes"
"$bin" check-config --config "$tmp/chef-full.toml" >"$tmp/chef-effective.toml" || fail "chef: check-config refused the config rendered with a full set"
checks compare-config "$tmp/chef-effective.toml" "$tmp/vars.json" chef
echo "SKIPPED running the Chef recipe: Chef is not packaged in Debian"
timed

echo "tests/deploy.sh: all passed"
