#!/usr/bin/env bash
# Builds the static release binary, with no dynamic dependency at all (no interpreter, no shared
# library; `ldd`: "statically linked"), and prints its path: target/<triple>/release/shuffle-janitor.
#
# The machine's toolchain targets glibc (x86_64-unknown-linux-gnu, or aarch64 on an arm64 host),
# and a musl target is not installed (rustup cannot fetch one without the network), so glibc is
# linked statically with `-C target-feature=+crt-static`. That is safe here because the binary
# never calls what a static glibc cannot do (the NSS functions getaddrinfo/getpwnam..., iconv,
# dlopen): addresses are parsed, never resolved; it runs on any Linux kernel >= 3.2 (static
# glibc's own floor) whatever the host's glibc: CentOS 7, Debian 10, Ubuntu 18.04 and newer.
# With --target, RUSTFLAGS reach only the target's crates, not build scripts and proc macros
# (which must stay dynamic).
#
# Usage: scripts/build-static.sh [--check]
#   --check  only check the binary that is there (no build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
fail() {
    echo "scripts/build-static.sh: $*" >&2
    exit 1
}

triple=$(rustc -vV | sed -n 's/^host: //p')
case $triple in
    *-linux-gnu | *-linux-musl) ;;
    *) fail "no static build for host $triple (Linux only)" ;;
esac
bin=target/$triple/release/shuffle-janitor
if [[ ${1:-} != --check ]]; then
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --release --locked --target "$triple" --bin shuffle-janitor >&2
fi
[[ -x $bin ]] || fail "$bin not built"
# Static: no program interpreter (PT_INTERP) and no shared library needed (DT_NEEDED). rustc links
# glibc static-pie (the executable keeps ASLR), for which ldd says "statically linked"; a non-PIE
# static binary would make it say "not a dynamic executable". Anything else it lists is a
# dynamic dependency.
if readelf -lW "$bin" | grep -q INTERP || readelf -dW "$bin" | grep -q NEEDED; then
    fail "$bin is dynamically linked: $(readelf -dW "$bin" | grep NEEDED | tr -s ' ' | tr '\n' ' ')"
fi
lddout=$(ldd "$bin" 2>&1 || true)
[[ $lddout == *"statically linked"* || $lddout == *"not a dynamic executable"* ]] ||
    fail "ldd $bin: $lddout"
echo "$bin"
