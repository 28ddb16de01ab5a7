#!/usr/bin/env bash
# Builds the release tarball and its checksum file:
#   target/dist/shuffle-janitor-<version>.linux-<arch>.tar.gz
#   target/dist/sha256sums.txt
# The tarball holds one directory, shuffle-janitor-<version>.linux-<arch>/, with the static
# binary (scripts/build-static.sh: no dynamic dependency, any glibc or none; stripped), config.toml (every key with its default), shuffle-janitor.service, the man pages
# (man/shuffle-janitor.8, man/shuffle-janitor.toml.5), the shell completions
# (completions/shuffle-janitor.bash, _shuffle-janitor for zsh, shuffle-janitor.fish),
# CHANGELOG.md, LICENSE, README.md and docs/. <version> is Cargo.toml's; <arch> is Debian's name for this
# machine (amd64, arm64..., the same as the .deb's). The archive is reproducible: same binary,
# same bytes.
#
# Usage: scripts/release-tarball.sh [--no-build] [OUTDIR]
#   --no-build  package the static binary that is there (target/<triple>/release/shuffle-janitor)
#               and the man pages and completions in
#               target/assets/ (cargo run --example gen-assets) as they are (they must exist)
#   OUTDIR      where to write (default target/dist)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

fail() {
    echo "scripts/release-tarball.sh: $*" >&2
    exit 1
}

build=1
if [[ ${1:-} == --no-build ]]; then
    build=
    shift
fi
out=${1:-$here/target/dist}

# The version in Cargo.toml's [package] table.
version=$(awk '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' Cargo.toml)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]] || fail "no version found in Cargo.toml (got '$version')"

if command -v dpkg >/dev/null 2>&1; then
    arch=$(dpkg --print-architecture)
else
    case $(uname -m) in
        x86_64) arch=amd64 ;;
        aarch64) arch=arm64 ;;
        armv7l) arch=armhf ;;
        *) arch=$(uname -m) ;;
    esac
fi

assets=target/assets
if [[ -n $build ]]; then
    bin=$(scripts/build-static.sh) || fail "the static build failed"
    cargo run --locked --quiet --example gen-assets >/dev/null
else
    bin=$(scripts/build-static.sh --check) || fail "no static binary: build it (scripts/build-static.sh) or drop --no-build"
fi
for f in man/shuffle-janitor.8 man/shuffle-janitor.toml.5 completions/shuffle-janitor.bash \
    completions/_shuffle-janitor completions/shuffle-janitor.fish; do
    [[ -f $assets/$f ]] || fail "$assets/$f not found: write it (cargo run --example gen-assets) or drop --no-build"
done

name=shuffle-janitor-$version.linux-$arch
mkdir -p "$out"
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/$name"
install -m 0755 "$bin" "$stage/$name/shuffle-janitor"
if command -v strip >/dev/null 2>&1; then
    strip "$stage/$name/shuffle-janitor"
fi
install -m 0644 config/shuffle-janitor.toml "$stage/$name/config.toml"
install -m 0644 systemd/shuffle-janitor.service "$stage/$name/shuffle-janitor.service"
install -D -m 0644 -t "$stage/$name/man" "$assets/man/shuffle-janitor.8" "$assets/man/shuffle-janitor.toml.5"
install -D -m 0644 -t "$stage/$name/completions" "$assets/completions/shuffle-janitor.bash" \
    "$assets/completions/_shuffle-janitor" "$assets/completions/shuffle-janitor.fish"
install -m 0644 CHANGELOG.md "$stage/$name/CHANGELOG.md"
install -m 0644 LICENSE "$stage/$name/LICENSE"
install -m 0644 README.md "$stage/$name/README.md"
install -D -m 0644 -t "$stage/$name/docs" docs/*.md

# Reproducible: fixed order, owner and times (the last commit's, else Cargo.toml's mtime).
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || stat -c %Y Cargo.toml)}
tarball=$name.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
    --format=gnu -C "$stage" -cf - "$name" | gzip -9 -n >"$out/$tarball.tmp"
mv "$out/$tarball.tmp" "$out/$tarball"
(cd "$out" && sha256sum "$tarball" >sha256sums.txt)

echo "$out/$tarball"
echo "$out/sha256sums.txt"
