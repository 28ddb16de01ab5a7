#!/usr/bin/env bash
# Builds the container image from Containerfile with the static binary, and prints its name:
#   shuffle-janitor:<version> (Cargo.toml's version), in the local podman/buildah storage.
# Needs podman or buildah (Debian: apt-get install podman, or buildah); no network at all: the
# base is `scratch`.
#
# Usage: scripts/build-image.sh [--no-build] [NAME]
#   --no-build  use the static binary that is there (scripts/build-static.sh --check)
#   NAME        image name without tag (default shuffle-janitor)
# Env:  SOURCE_URL  org.opencontainers.image.source (default: git's origin remote, else "unknown")
#
# To publish: scripts/build-image.sh registry.example.com/infra/shuffle-janitor, then
#   podman push registry.example.com/infra/shuffle-janitor:<version>
# and set that name as `image:` in deploy/kubernetes/daemonset.yaml.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
fail() {
    echo "scripts/build-image.sh: $*" >&2
    exit 1
}

check=
if [[ ${1:-} == --no-build ]]; then
    check=--check
    shift
fi
name=${1:-shuffle-janitor}
bin=$(scripts/build-static.sh $check) || fail "no static binary"
version=$(awk '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' Cargo.toml)
revision=${SHUFFLE_JANITOR_REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
source=${SOURCE_URL:-$(git remote get-url origin 2>/dev/null || echo unknown)}
# The last commit's time: the same commit gives the same labels.
created=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || stat -c %Y Cargo.toml)}" +%Y-%m-%dT%H:%M:%SZ)

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp Containerfile "$ctx/"
install -D -m 0755 "$bin" "$ctx/rootfs/usr/bin/shuffle-janitor"
strip "$ctx/rootfs/usr/bin/shuffle-janitor" 2>/dev/null || true
install -D -m 0644 config/shuffle-janitor.toml "$ctx/rootfs/etc/shuffle-janitor/config.toml"
install -D -m 0644 LICENSE "$ctx/rootfs/usr/share/doc/shuffle-janitor/LICENSE"
chmod -R go-w "$ctx/rootfs"

args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source"
    --build-arg "CREATED=$created" -t "$name:$version" -f "$ctx/Containerfile" "$ctx")
if command -v podman >/dev/null 2>&1; then
    podman build --quiet "${args[@]}" >&2
elif command -v buildah >/dev/null 2>&1; then
    buildah bud --quiet "${args[@]}" >&2
else
    fail "neither podman nor buildah is installed (Debian: apt-get install podman)"
fi
echo "$name:$version"
