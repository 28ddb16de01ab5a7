#!/usr/bin/env bash
# The static binary and the container image, checked for real:
#   1. scripts/build-static.sh builds the static binary; `ldd` says "statically linked".
#   2. In an empty root (chroot into a directory holding only the binary, a config and a Spark
#      local dir) `sweep` deletes a stale map output and keeps a fresh one, and the daemon sweeps
#      and serves /metrics.
#   3. scripts/build-image.sh builds the image (podman, FROM scratch: no network); skopeo
#      inspects it: entrypoint, user, OCI labels (version, revision, source, licenses), size
#      under 15 MiB.
#   4. podman runs it (runc, cgroupfs, explicit ulimits, host network) with a tmpfs Spark local
#      dir mounted in: `sweep` deletes the stale unit, the daemon (the image's command) serves
#      /metrics. Where the machine cannot run
#      containers it says SKIPPED and why, and runs the image's root filesystem with chroot.
#   5. podman runs deploy/marathon/shuffle-janitor.json as a Mesos agent would (its image, args,
#      env, host path volumes on a tmpfs, the fetched config in the sandbox, host network, the
#      agent's PID namespace): healthy, ready, deletes a stale unit and keeps a fresh one in each
#      Spark local dir, serves /metrics, saves its state, stops on SIGTERM (SKIPPED with 4).
# Needs root (chroot, mount). Installs podman, buildah, skopeo, runc and curl when missing.
#
# Usage: tests/image.sh [--no-build]   (--no-build: use the static binary that is there)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

passed=0
say() { echo "image.sh: $*"; }
ok() {
    passed=$((passed + 1))
    echo "image.sh: ok: $*"
}
fail() {
    echo "image.sh: FAILED: $*" >&2
    echo "image: $passed passed, 1 failed"
    exit 1
}
[[ $(id -u) == 0 ]] || fail "needs root (chroot, mount, podman as root)"
apt_updated=
apt_install() {
    [[ -n $apt_updated ]] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
missing=()
for tool in podman:podman buildah:buildah skopeo:skopeo runc:runc curl:curl; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
[[ ${#missing[@]} -eq 0 ]] || { say "installing ${missing[*]}"; apt_install "${missing[@]}"; }

tmp=$(mktemp -d)
mounts=()
pids=()
container=
cleanup() {
    local p m
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n $container ]] && podman rm -f "$container" >/dev/null 2>&1
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

BM=blockmgr-646dd966-f4a1-418b-90b6-9ce0ed5d3da5
# A Spark local dir at $1: a map output unused for 7 h (stale: max_age is 6h) and a fresh one.
spark_tree() {
    mkdir -p "$1/$BM/0c" "$1/$BM/0d"
    head -c 4096 /dev/zero >"$1/$BM/0c/shuffle_0_1_0.data"
    head -c 64 /dev/zero >"$1/$BM/0c/shuffle_0_1_0.index"
    touch -d '-7 hours' "$1/$BM/0c/shuffle_0_1_0.data" "$1/$BM/0c/shuffle_0_1_0.index"
    head -c 4096 /dev/zero >"$1/$BM/0d/shuffle_0_2_0.data"
    head -c 64 /dev/zero >"$1/$BM/0d/shuffle_0_2_0.index"
}
# Stale unit gone, fresh one there.
check_tree() { # DIR WHAT
    [[ ! -e $1/$BM/0c/shuffle_0_1_0.data && ! -e $1/$BM/0c/shuffle_0_1_0.index ]] ||
        fail "$2: the stale map output is still there"
    [[ -f $1/$BM/0d/shuffle_0_2_0.data && -f $1/$BM/0d/shuffle_0_2_0.index ]] ||
        fail "$2: the fresh map output was deleted"
}
# A config for a root with nothing but the janitor in it: no /proc, so no open-file check and no
# store reaping (both read /proc; on a node they run, see the DaemonSet's hostPID).
config() { # ROOT PORT
    printf 'roots = ["%s"]\nstate_dir = ""\nskip_open_files = false\n[stores]\nreap = false\n[metrics]\nlisten = "127.0.0.1:%s"\n' "$1" "$2"
}
wait_metrics() { # PORT PID-OR-EMPTY LOG
    local i
    for i in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$1/metrics" -o "$tmp/metrics.txt" 2>/dev/null &&
            grep -q '^shuffle_janitor_sweeps_total{[^}]*} [1-9]' "$tmp/metrics.txt"; then
            return 0
        fi
        [[ -n $2 ]] && ! kill -0 "$2" 2>/dev/null && break
        sleep 0.2
    done
    echo "--- log" >&2
    tail -n 20 "$3" >&2
    return 1
}
# In the root $1 (chroot): `sweep` deletes the stale unit and keeps the fresh one; then the daemon
# sweeps and serves /metrics. (The daemon itself keeps units it has not watched for max_age
# from the TTL, docs/daemon.md: at its start every unit is such, so the deleting is shown by
# `sweep`, the same deletion code.)
run_in_root() { # ROOT BIN-IN-ROOT WHAT
    local root=$1 bin=$2 what=$3 port pid
    port=$(free_port)
    mkdir -p "$root/spark/local" "$root/etc/shuffle-janitor"
    spark_tree "$root/spark/local"
    config /spark/local "$port" >"$root/etc/shuffle-janitor/janitor.toml"
    chroot "$root" "$bin" sweep --config /etc/shuffle-janitor/janitor.toml --dry-run >"$tmp/dry.txt" 2>&1 ||
        fail "$what: sweep --dry-run: $(tail -n 3 "$tmp/dry.txt")"
    grep -q "shuffle_0_1_0.data" "$tmp/dry.txt" || fail "$what: the dry run does not list the stale unit: $(cat "$tmp/dry.txt")"
    chroot "$root" "$bin" sweep --config /etc/shuffle-janitor/janitor.toml >"$tmp/sweep.txt" 2>&1 ||
        fail "$what: sweep: $(tail -n 3 "$tmp/sweep.txt")"
    check_tree "$root/spark/local" "$what: sweep"
    chroot "$root" "$bin" run --config /etc/shuffle-janitor/janitor.toml >"$tmp/chroot.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_metrics "$port" "$pid" "$tmp/chroot.log" || fail "$what: no /metrics with a finished sweep"
    kill -TERM "$pid"
    wait "$pid" || fail "$what: the daemon did not exit 0 on SIGTERM"
}

# --- 1. the static binary ---------------------------------------------------------------------
if [[ ${1:-} == --no-build ]]; then
    bin=$(scripts/build-static.sh --check) || fail "no static binary"
else
    bin=$(scripts/build-static.sh) || fail "scripts/build-static.sh failed"
fi
ok "$bin: ldd: $(ldd "$bin" 2>&1 | head -n1 | sed 's/^[[:space:]]*//'); $(stat -c %s "$bin") bytes; $("$bin" --version)"

# --- 2. an empty root ---------------------------------------------------------------------------
root=$tmp/emptyroot
mkdir -p "$root"
install -m 0755 "$bin" "$root/shuffle-janitor"
run_in_root "$root" /shuffle-janitor "empty root"
ok "empty root (only the binary, a config, a Spark local dir; no /proc, /dev, libc): sweep --dry-run lists the stale unit, sweep deletes it and keeps the fresh one, run sweeps and serves /metrics, exits 0 on SIGTERM"

# --- 3. the image ---------------------------------------------------------------------------------
image=$(scripts/build-image.sh --no-build) || fail "scripts/build-image.sh failed"
ref=containers-storage:localhost/$image
skopeo inspect --config "$ref" >"$tmp/config.json" || fail "skopeo inspect --config $ref"
skopeo inspect "$ref" >"$tmp/inspect.json" || fail "skopeo inspect $ref"
version=$(awk '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' Cargo.toml)
revision=${SHUFFLE_JANITOR_REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
size=$(podman image inspect --format '{{.Size}}' "$image")
python3 - "$tmp/config.json" "$tmp/inspect.json" "$version" "$revision" "$size" <<'EOF' || fail "the image's metadata"
import json, sys
cfg = json.load(open(sys.argv[1]))["config"]
inspect = json.load(open(sys.argv[2]))
version, revision, size = sys.argv[3], sys.argv[4], int(sys.argv[5])
labels = cfg.get("Labels") or {}
problems = []
want = {
    "org.opencontainers.image.version": version,
    "org.opencontainers.image.revision": revision,
    "org.opencontainers.image.licenses": "Apache-2.0",
}
for k, v in want.items():
    if labels.get(k) != v:
        problems.append(f"label {k} is {labels.get(k)!r}, not {v!r}")
if not labels.get("org.opencontainers.image.source"):
    problems.append("no org.opencontainers.image.source label")
if cfg.get("Entrypoint") != ["/usr/bin/shuffle-janitor"]:
    problems.append(f"entrypoint {cfg.get('Entrypoint')}")
if cfg.get("Cmd") != ["run", "--config", "/etc/shuffle-janitor/config.toml"]:
    problems.append(f"cmd {cfg.get('Cmd')}")
if cfg.get("User") != "0:0":
    problems.append(f"user {cfg.get('User')!r}, not '0:0' (see Containerfile)")
if len(inspect.get("Layers") or []) != 1:
    problems.append(f"{len(inspect.get('Layers') or [])} layers, not 1 (FROM scratch)")
if size >= 15 * 1024 * 1024:
    problems.append(f"{size} bytes, not under 15 MiB")
if problems:
    print("image.sh: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"image.sh: {size} bytes ({size / 1048576:.1f} MiB), user {cfg['User']}, entrypoint {cfg['Entrypoint']}, "
      f"version {version}, revision {revision[:12]}, source {labels['org.opencontainers.image.source']}")
EOF
ok "$image: skopeo inspect: entrypoint, cmd, user 0:0, OCI labels, one layer, under 15 MiB"

# --- 4. the image, run ----------------------------------------------------------------------------
local_dir=$tmp/spark-local
mkdir -p "$local_dir"
mount -t tmpfs -o size=16m tmpfs "$local_dir" || fail "cannot mount a tmpfs"
mounts+=("$local_dir")
spark_tree "$local_dir"
port=$(free_port)
config /var/data "$port" >"$tmp/janitor.toml"
container=shuffle-janitor-image-test-$$
# Debian's podman as root on this kind of machine: runc (crun refuses the host's cgroups),
# cgroupfs, explicit ulimits (the defaults it would copy can exceed what the runtime may set),
# host network (no netavark/slirp needed; the DaemonSet uses the pod's network). As the
# DaemonSet: read-only, every capability dropped but the three the janitor needs.
# nofile: 65536, or this shell's hard limit when lower (runc cannot raise it past that here).
nofile=$(ulimit -Hn)
[[ $nofile == unlimited || $nofile -gt 65536 ]] && nofile=65536
podman_flags=(--runtime runc --cgroup-manager=cgroupfs --ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096
    --network host --cap-drop all --cap-add DAC_OVERRIDE,FOWNER,SYS_PTRACE --read-only
    -v "$local_dir:/var/data" -v "$tmp/janitor.toml:/etc/shuffle-janitor/config.toml:ro")
if podman run --rm "${podman_flags[@]}" "$image" sweep --config /etc/shuffle-janitor/config.toml \
    >"$tmp/podman-run.txt" 2>&1; then
    check_tree "$local_dir" "podman run $image sweep"
    # The image's own command: the daemon.
    podman run -d --name "$container" "${podman_flags[@]}" "$image" >/dev/null || fail "podman run -d $image"
    if ! wait_metrics "$port" "" /dev/null; then
        podman logs "$container" >&2 || true
        fail "podman: the container served no /metrics with a finished sweep"
    fi
    podman stop -t 10 "$container" >/dev/null
    status=$(podman inspect --format '{{.State.ExitCode}}' "$container")
    [[ $status == 0 ]] || fail "podman: the daemon's container exited $status on SIGTERM"
    ok "podman run (runc, read-only, only DAC_OVERRIDE FOWNER SYS_PTRACE), a tmpfs Spark local dir mounted in: sweep deleted the stale unit and kept the fresh one; the image's command (the daemon) swept, served /metrics, exited 0 on SIGTERM"
    podman rm -f "$container" >/dev/null 2>&1 || true
    container=
    podman_runs=1
else
    podman_skip="this machine cannot run containers: $(tr '\n' ' ' <"$tmp/podman-run.txt" | cut -c1-300)"
    say "SKIPPED podman run: $podman_skip"
    rootfs=$tmp/rootfs
    mkdir -p "$rootfs"
    cid=$(podman create "$image") || fail "podman create $image"
    podman export "$cid" | tar -x -C "$rootfs" || fail "podman export"
    podman rm "$cid" >/dev/null
    run_in_root "$rootfs" /usr/bin/shuffle-janitor "the image's root filesystem"
    ok "the image's root filesystem, by chroot instead: sweep deletes the stale unit; the daemon serves /metrics"
fi

# --- 5. the Marathon app, run as the Mesos agent would ---------------------------------------------
# deploy/marathon/shuffle-janitor.json as the Universal Container Runtime runs it: its image, the
# image's entrypoint with the app's args, its env and what Mesos adds (MESOS_SANDBOX, PORT0), its
# host path volumes at their container paths, the sandbox at /mnt/mesos/sandbox holding the
# fetched config (deploy/marathon/config.toml), host network, and the agent's PID namespace (an
# agent without the namespaces/pid isolator). Only the host side changes: each hostPath is a
# directory of a tmpfs (a fake agent: $mtmp/host/tmp, $mtmp/host/data1/spark, ...), and the
# config's metrics.listen is a free port on 127.0.0.1; its roots and state_dir are kept, since the
# container paths are. The capabilities are the three the README tells the operator to leave the
# task (Marathon cannot ask for them; README "Mesos (Marathon)").
if [[ -n ${podman_runs:-} ]]; then
    mtmp=$tmp/marathon
    mkdir -p "$mtmp"
    mount -t tmpfs -o size=16m tmpfs "$mtmp" || fail "cannot mount a tmpfs"
    mounts+=("$mtmp")
    port=$(free_port)
    python3 - deploy/marathon/shuffle-janitor.json deploy/marathon/config.toml "$mtmp" "$port" >"$tmp/marathon.sh" <<'EOF' ||
import fnmatch, json, os, re, shlex, sys, tomllib
app_path, config_path, mtmp, port = sys.argv[1:]
app = json.load(open(app_path))
c = app["container"]
assert c["type"] == "MESOS" and "cmd" not in app, "not a Mesos container app with args"
text = open(config_path).read()
text, n = re.subn(r'(?m)^listen = ".*"$', f'listen = "127.0.0.1:{port}"', text)
assert n == 1, "metrics.listen not found in the config"
config = tomllib.loads(text)
# The fetched config, where the fetcher puts it: the sandbox, under its destPath.
sandbox = os.path.join(mtmp, "sandbox")
os.makedirs(sandbox)
(fetch,) = [f for f in app["fetch"] if f["uri"].endswith(".toml")]
open(os.path.join(sandbox, fetch.get("destPath") or fetch["uri"].rsplit("/", 1)[1]), "w").write(text)
q = lambda xs: "(" + " ".join(shlex.quote(x) for x in xs) + ")"
vols, spark, state = [], [], None
for v in c["volumes"]:
    host = os.path.join(mtmp, "host", v["hostPath"].lstrip("/"))
    os.makedirs(host)
    vols += ["-v", f"{host}:{v['containerPath']}:{v['mode'].lower()}"]
    if v["containerPath"] == config["state_dir"]:
        state = host
    elif any(fnmatch.fnmatchcase(v["containerPath"], r) for r in config["roots"]):
        spark.append(host)
assert state and spark, "no state_dir or no root among the volumes"
vols += ["-v", f"{sandbox}:/mnt/mesos/sandbox:rw"]
env = dict(app.get("env", {}), MESOS_SANDBOX="/mnt/mesos/sandbox", PORT0=port)
print(f"image={shlex.quote(c['docker']['image'])}")
print(f"args={q(app['args'])}")
print(f"vol_flags={q(vols)}")
print(f"env_flags={q([a for k, v in env.items() for a in ('-e', f'{k}={v}')])}")
print(f"spark_dirs={q(spark)}")
print(f"state_host={shlex.quote(state)}")
print(f"health_path={shlex.quote(app['healthChecks'][0]['path'])}")
print(f"ready_path={shlex.quote(app['readinessChecks'][0]['path'])}")
print(f"grace={int(app['taskKillGracePeriodSeconds'])}")
EOF
        fail "reading deploy/marathon/shuffle-janitor.json"
    # What the app gives (set by the script just written).
    image='' args=() vol_flags=() env_flags=() spark_dirs=() state_host='' health_path='' ready_path='' grace=''
    # shellcheck disable=SC1091
    source "$tmp/marathon.sh"
    # Each Spark local dir (each root's volume): a map output whose timestamps prove it unread for
    # longer than max_age (6h): on this relatime tmpfs an atime older than max_age + 24 h, so the
    # daemon's TTL may take it at once (README "What is deleted"), and a fresh one.
    for d in "${spark_dirs[@]}"; do
        spark_tree "$d"
        touch -d '-31 hours' "$d/$BM/0c/shuffle_0_1_0.data" "$d/$BM/0c/shuffle_0_1_0.index"
    done
    [[ $image == shuffle-janitor:* ]] || fail "the Marathon app's image $image is not shuffle-janitor:<version>"
    container=shuffle-janitor-marathon-test-$$
    podman run -d --name "$container" --runtime runc --cgroup-manager=cgroupfs \
        --ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096 --network host --pid host \
        --cap-drop all --cap-add DAC_OVERRIDE,FOWNER,SYS_PTRACE \
        "${vol_flags[@]}" "${env_flags[@]}" "localhost/$image" "${args[@]}" >/dev/null ||
        fail "podman run the Marathon app's container"
    mlog() { podman logs "$container" 2>&1 | tail -n 20 >&2 || true; }
    for path in "$health_path" "$ready_path"; do
        for _ in $(seq 1 100); do
            curl -fsS "http://127.0.0.1:$port$path" -o /dev/null 2>/dev/null && break
            sleep 0.2
        done
        curl -fsS "http://127.0.0.1:$port$path" -o /dev/null || { mlog; fail "the Marathon app's container does not answer $path"; }
    done
    wait_metrics "$port" "" /dev/null || { mlog; fail "the Marathon app's container served no /metrics with a finished sweep"; }
    for d in "${spark_dirs[@]}"; do check_tree "$d" "the Marathon app's container, ${d#"$mtmp"/host}"; done
    cpid=$(podman inspect --format '{{.State.Pid}}' "$container")
    cuid=$(awk '/^Uid:/ { print $2 }' "/proc/$cpid/status")
    caps=$(awk '/^CapEff:/ { print $2 }' "/proc/$cpid/status")
    [[ $cuid == 0 && $caps == 000000000008000a ]] ||
        fail "the Marathon app's container runs as uid $cuid with capabilities $caps, not 0 with DAC_OVERRIDE FOWNER SYS_PTRACE"
    # The agent's PID namespace: where that is the node's (the kernel's initial one, as here when
    # this test runs on a host), the janitor sees every process and can judge stores' liveness.
    if [[ $(stat -L -c %i /proc/self/ns/pid) == 4026531836 ]]; then
        grep -q '^shuffle_janitor_store_liveness_unknown 0$' "$tmp/metrics.txt" ||
            { mlog; fail "in the node's PID namespace the janitor cannot judge stores' liveness: $(grep liveness_unknown "$tmp/metrics.txt")"; }
        pidns="the node's PID namespace, store liveness known"
    else
        pidns="this test's PID namespace, not the node's (liveness not checked)"
    fi
    podman stop -t "$grace" "$container" >/dev/null
    status=$(podman inspect --format '{{.State.ExitCode}}' "$container")
    [[ $status == 0 ]] || { mlog; fail "the Marathon app's container exited $status on SIGTERM"; }
    [[ -s $state_host/opens.json ]] || fail "the Marathon app's container saved no state in its state_dir volume: $(ls -la "$state_host")"
    ok "the Marathon app (image $image, args ${args[*]}, ${#spark_dirs[@]} Spark local dirs and state_dir as host volumes, the config fetched into /mnt/mesos/sandbox, host network, $pidns): healthy, ready, deleted the stale unit and kept the fresh one in each local dir, served /metrics, saved its state, exited 0 on SIGTERM"
else
    say "SKIPPED running the Marathon app's container: ${podman_skip:-podman could not run containers}"
fi
echo "image: $passed passed, 0 failed"
