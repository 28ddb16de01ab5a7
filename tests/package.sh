#!/usr/bin/env bash
# The Debian package, end to end, on this machine (needs root and dpkg):
#   1. writes the man pages and completions (cargo run --example gen-assets), builds the package
#      with cargo-deb (installed from crates.io into ~/.cargo/bin when missing),
#   2. checks its contents, conffiles and dependencies, its changelogs and copyright; runs Debian's
#      lintian on it, which must report no error or warning that the package's overrides file
#      does not override with a reason (and docs/install.md justifies); renders both man pages with
#      `man -l`, which must not warn,
#   3. installs it with apt (`apt-get install ./…deb`, as the README says): the system user,
#      `shuffle-janitor --version`, `check-config` on the installed config, `systemd-analyze
#      verify` and `security` on the installed unit, the unit enabled; the service started only
#      where systemd runs (said SKIPPED otherwise); `man shuffle-janitor` and
#      `man 5 shuffle-janitor.toml`; the bash, zsh and fish completions loaded by each shell the
#      way it loads them for a user, and completing a command,
#   4. runs the installed binary as the package's user with exactly the unit's capabilities
#      (setpriv), on a tree owned by another user, to show it still deletes there and keeps a
#      file that other user holds open; and without them, to show they are what it needs,
#   5. installs it again (idempotent), removes it (a changed conffile stays), purges it and checks
#      that nothing is left: files, directories, conffiles, unit symlinks, user, group.
# Prints the path of the .deb last (tests/deploy.sh reuses it).
#
# Usage: tests/package.sh
# Env:   CARGO_DEB_VERSION  the cargo-deb version requirement to install (default ^3)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export CARGO_TERM_COLOR=never SYSTEMD_COLORS=0 SYSTEMD_PAGER=

pkg=shuffle-janitor
user=shuffle-janitor
unit=shuffle-janitor.service

fail() {
    echo "tests/package.sh: FAILED: $*" >&2
    exit 1
}
step() { echo "== $*"; }
ok() { echo "ok: $*"; }

[[ $(id -u) -eq 0 ]] || fail "needs root (dpkg -i, a system user, chown)"
for tool in dpkg dpkg-deb apt-get setpriv getent python3; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool not found"
done

apt_updated=
apt_install() {
    [[ -n $apt_updated ]] || {
        apt-get update -qq
        apt_updated=1
    }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# Debian's lintian; man and groff to render the pages; the shells whose completions it installs.
step "tools"
missing=()
for tool in lintian:lintian man:man-db groff:groff-base zsh:zsh fish:fish; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
[[ -f /usr/share/bash-completion/bash_completion ]] || missing+=(bash-completion)
if ((${#missing[@]})); then
    echo "(installing ${missing[*]} from Debian)"
    apt_install "${missing[@]}"
fi
lintian --version

installed() {
    local s
    s=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) || return 1
    [[ -n $s && $s != not-installed ]]
}

tmp=$(mktemp -d)
# The test tree and config below are read by an unprivileged user too.
chmod 0755 "$tmp"
holder=
cleanup() {
    local status=$?
    [[ -z $holder ]] || kill "$holder" 2>/dev/null || true
    rm -rf "$tmp"
    if [[ $status -ne 0 ]] && installed; then
        echo "(purging $pkg after the failure)" >&2
        dpkg --purge "$pkg" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

if installed; then
    echo "($pkg is installed already, left over from an earlier run? purging it first)"
    dpkg --purge "$pkg" >/dev/null
fi

# --- 1. Build ---------------------------------------------------------------------------------
step "man pages and completions (cargo run --example gen-assets)"
cargo run --locked --quiet --example gen-assets >/dev/null || fail "examples/gen-assets failed"
ok "target/assets: $(cd target/assets && find . -type f | sort | tr '\n' ' ')"

step "cargo-deb"
start=$SECONDS
if ! cargo deb --version >/dev/null 2>&1; then
    echo "(installing cargo-deb from crates.io into ~/.cargo/bin: compiles for a few minutes, once)"
    cargo install cargo-deb --locked --version "${CARGO_DEB_VERSION:-^3}"
fi
cargo deb --version

step "cargo deb (release build, static: scripts/build-static.sh's target and flags)"
triple=$(rustc -vV | sed -n 's/^host: //p')
deb=$(RUSTFLAGS="-C target-feature=+crt-static" cargo deb --target "$triple" -- --locked | tail -n1)
[[ -f $deb && $deb == *.deb ]] || fail "cargo deb did not report a .deb (got '$deb')"
echo "$deb ($((SECONDS - start)) s)"
# The same build as a later revision, to upgrade to and roll back from. (cargo deb empties
# target/debian when it writes elsewhere: keep a copy and put it back.)
cp "$deb" "$tmp/"
mkdir "$tmp/upgrade"
cargo deb --target "$triple" --no-build --deb-revision 999 -o "$tmp/upgrade/" >/dev/null
upgrade=$(echo "$tmp"/upgrade/*.deb)
mkdir -p "$(dirname "$deb")"
cp "$tmp/$(basename "$deb")" "$deb"

# --- 2. Contents ------------------------------------------------------------------------------
step "contents of $(basename "$deb")"
version=$(awk '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' Cargo.toml)
# The commit build.rs stamps into --version (SHUFFLE_JANITOR_REVISION when set, as for a build without .git).
revision=${SHUFFLE_JANITOR_REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
[[ $(dpkg-deb -f "$deb" Package) == "$pkg" ]] || fail "Package: is not $pkg"
[[ $(dpkg-deb -f "$deb" Version) == "$version"-* ]] || fail "Version: $(dpkg-deb -f "$deb" Version) is not $version-*"
depends=" $(dpkg-deb -f "$deb" Depends | tr -d ,) "
[[ $depends == *" adduser "* ]] || fail "Depends: lacks adduser (postinst uses it)"
dpkg-deb -c "$deb" | awk '{ print $1, $NF }' >"$tmp/contents"
doc=./usr/share/doc/$pkg
docs_want=()
for page in docs/*.md; do docs_want+=("-rw-r--r-- $doc/$page"); done
for want in "-rwxr-xr-x ./usr/bin/shuffle-janitor" \
    "-rw-r--r-- ./etc/shuffle-janitor/config.toml" \
    "-rw-r--r-- ./etc/default/shuffle-janitor" \
    "-rw-r--r-- ./usr/lib/systemd/system/$unit" \
    "-rw-r--r-- ./usr/share/man/man8/shuffle-janitor.8.gz" \
    "-rw-r--r-- ./usr/share/man/man5/shuffle-janitor.toml.5.gz" \
    "-rw-r--r-- ./usr/share/bash-completion/completions/shuffle-janitor" \
    "-rw-r--r-- ./usr/share/zsh/vendor-completions/_shuffle-janitor" \
    "-rw-r--r-- ./usr/share/fish/vendor_completions.d/shuffle-janitor.fish" \
    "-rw-r--r-- $doc/copyright" \
    "-rw-r--r-- $doc/changelog.Debian.gz" \
    "-rw-r--r-- $doc/changelog.gz" \
    "-rw-r--r-- $doc/README.md" \
    "${docs_want[@]}" \
    "-rw-r--r-- ./usr/share/lintian/overrides/$pkg"; do
    grep -qxF -- "$want" "$tmp/contents" || fail "the package lacks '$want'; it has:$(printf '\n  %s' "$(cat "$tmp/contents")")"
done
dpkg-deb -e "$deb" "$tmp/control"
printf '%s\n' /etc/default/shuffle-janitor /etc/shuffle-janitor/config.toml >"$tmp/want-conffiles"
sort "$tmp/control/conffiles" | diff -u "$tmp/want-conffiles" - || fail "conffiles differ from the two expected"
for s in postinst prerm postrm; do
    [[ -x $tmp/control/$s ]] || fail "maintainer script $s missing"
    sh -n "$tmp/control/$s" || fail "$s: shell syntax"
    ! grep -q '#DEBHELPER#' "$tmp/control/$s" || fail "$s: #DEBHELPER# left unreplaced"
done
grep -q 'deb-systemd-helper enable shuffle-janitor.service' "$tmp/control/postinst" ||
    fail "postinst does not enable the unit (cargo-deb systemd-units)"
ok "binary, config and /etc/default as conffiles, unit in /usr/lib/systemd/system, scripts, man pages, completions, docs"

mkdir "$tmp/data"
dpkg-deb -x "$deb" "$tmp/data"
for gz in "$doc/changelog.Debian.gz" "$doc/changelog.gz" ./usr/share/man/man8/shuffle-janitor.8.gz; do
    # Reproducible gzip (as gzip -n makes): no file name, no time stamp.
    header=$(od -An -tx1 -N8 "$tmp/data/$gz" | tr -d ' \n')
    [[ $header == 1f8b080000000000 ]] || fail "$gz: gzip header $header: not reproducible (a name or a time in it)"
done
top=$(zcat "$tmp/data/$doc/changelog.Debian.gz" | head -n1)
[[ $top == "$pkg ($(dpkg-deb -f "$deb" Version)) "* ]] ||
    fail "debian/changelog's first entry is '$top', not for $(dpkg-deb -f "$deb" Version): add an entry for this version"
cmp -s <(zcat "$tmp/data/$doc/changelog.gz") CHANGELOG.md || fail "$doc/changelog.gz is not CHANGELOG.md"
grep -qx '## \[Unreleased\]' CHANGELOG.md || fail "CHANGELOG.md has no [Unreleased] section (Keep a Changelog)"
grep -q "^## \[$version\] - [0-9]\{4\}-[0-9][0-9]-[0-9][0-9]\$" CHANGELOG.md || fail "CHANGELOG.md has no dated [$version] entry"
head -n1 "$tmp/data/$doc/copyright" | grep -qx 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' ||
    fail "copyright is not machine-readable (DEP-5)"
grep -q '^Copyright: [0-9]' "$tmp/data/$doc/copyright" || fail "copyright has no Copyright: notice"
ok "changelog.Debian.gz ($top), changelog.gz (CHANGELOG.md), DEP-5 copyright with its notice"

# Each override in the package's overrides file says why, in a comment above it, and docs/install.md
# says so too.
overrides=debian/$pkg.lintian-overrides
cmp -s "$overrides" "$tmp/data/usr/share/lintian/overrides/$pkg" || fail "the installed overrides are not $overrides"
awk -v f="$overrides" '/^[^#[:space:]]/ && prev !~ /^#/ { printf "%s:%d: an override without a reason (a comment above it): %s\n", f, NR, $0; bad = 1 }
    { prev = $0 } END { exit bad }' "$overrides" >&2 || fail "$overrides: every override needs a reason"
while read -r tag; do
    grep -qF "\`$tag\`" docs/install.md || fail "docs/install.md does not justify the lintian override $tag"
done < <(sed -n "s/^$pkg: \([a-z0-9-]*\).*/\1/p" "$overrides")

step "lintian $(basename "$deb")"
# As an unprivileged user (lintian unpacks the package to inspect it), on a copy it can read.
mkdir "$tmp/lintian"
cp "$deb" "$tmp/lintian/"
chown -R nobody: "$tmp/lintian"
status=0
lint=$(cd "$tmp/lintian" && setpriv --reuid=nobody --regid=nogroup --clear-groups \
    env HOME="$tmp/lintian" TMPDIR="$tmp/lintian" lintian --show-overrides --fail-on none "$(basename "$deb")" 2>&1) ||
    status=$?
[[ -z $lint ]] || echo "$lint"
((status == 0)) || fail "lintian failed to run (exit $status)"
! grep -qE '^[EW]: ' <<<"$lint" || fail "lintian reports errors or warnings (E:, W: above); fix them, or override one in $overrides with a reason and say why in docs/install.md"
overridden=$(grep -c '^O: ' <<<"$lint" || true)
ok "lintian: no error or warning ($overridden overridden, each with its reason)"

step "man -l on both pages"
for page in man8/shuffle-janitor.8.gz man5/shuffle-janitor.toml.5.gz; do
    # The way lintian checks a page, then as a reader's terminal shows it; any warning fails.
    warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$tmp/data/usr/share/man/$page" 2>&1 >/dev/null)
    warnings+=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$tmp/data/usr/share/man/$page" 2>&1 >/dev/null)
    [[ -z $warnings ]] || fail "man -l $page warns: $warnings"
done
ok "both pages render without warnings"

# --- 3. Install -------------------------------------------------------------------------------
step "apt-get install ./$(basename "$deb")"
# apt wants a path with a slash to take a file; it needs no download when adduser is there.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "$(realpath "$deb")" ||
    fail "apt-get install of the .deb failed"
installed || fail "apt-get install did not leave $pkg installed"
dpkg-query -L "$pkg" | sort >"$tmp/files"

getent passwd "$user" >"$tmp/passwd" || fail "postinst did not create the user $user"
IFS=: read -r _ _ uid gid _ home shell <"$tmp/passwd"
((uid < 1000)) || fail "$user has uid $uid: not a system user"
[[ $shell == /usr/sbin/nologin && $home == /nonexistent ]] || fail "$user: home $home, shell $shell"
[[ $(getent group "$gid" | cut -d: -f1) == "$user" ]] || fail "$user's primary group is not $user"
[[ ! -e /nonexistent ]] || fail "/nonexistent exists"
ok "system user $user (uid $uid, group $user, no home, nologin)"

out=$(/usr/bin/shuffle-janitor --version)
[[ $out == "shuffle-janitor $version (revision $revision, rustc "*")" ]] || fail "--version said '$out', not 'shuffle-janitor $version (revision $revision, rustc ...)'"
ok "installed shuffle-janitor --version: $out"
# The static binary, and no libc6 in Depends (any glibc, or none, will do).
# static-pie (scripts/build-static.sh says why): ldd says "statically linked".
lddout=$(ldd /usr/bin/shuffle-janitor 2>&1 || true)
[[ $lddout == *"statically linked"* ]] || fail "/usr/bin/shuffle-janitor is dynamically linked: $lddout"
[[ " $(dpkg-deb -f "$deb" Depends | tr -d ,) " != *" libc6 "* ]] || fail "Depends: names libc6, but the binary is static"
ok "installed /usr/bin/shuffle-janitor is static (ldd: statically linked), Depends: $(dpkg-deb -f "$deb" Depends)"
shuffle-janitor check-config --config /etc/shuffle-janitor/config.toml >"$tmp/effective" ||
    fail "check-config refused the installed config"
grep -qx 'roots = \["/tmp"\]' "$tmp/effective" || fail "installed config's roots are not the default"
ok "check-config accepts /etc/shuffle-janitor/config.toml"

# The unit from its installed path; on merged-/usr systems (Debian 12) /lib is /usr/lib.
installed_unit=/usr/lib/systemd/system/$unit
[[ -f $installed_unit ]] || fail "$installed_unit missing"
if [[ /lib -ef /usr/lib ]]; then
    installed_unit=/lib/systemd/system/$unit
    [[ -f $installed_unit ]] || fail "$installed_unit missing"
fi
grep -qx "User=$user" "$installed_unit" || fail "the installed unit has no User=$user"
if command -v systemd-analyze >/dev/null 2>&1; then
    step "systemd-analyze verify $installed_unit"
    status=0
    va=$(systemd-analyze verify "$installed_unit" 2>&1) || status=$?
    ours=$(grep -F shuffle-janitor <<<"$va" || true)
    if [[ -n $ours || $status -ne 0 ]]; then
        echo "$va" >&2
        fail "systemd-analyze verify reported problems with the installed unit (exit $status)"
    fi
    ok "no warnings or errors about the installed $unit"
    systemd-analyze security --no-pager --offline=true "$installed_unit" 2>&1 |
        grep -E 'Overall exposure level' || fail "systemd-analyze security failed on the installed unit"
else
    echo "SKIPPED systemd-analyze: not installed (Debian: apt-get install systemd)"
fi

[[ -L /etc/systemd/system/multi-user.target.wants/$unit ]] ||
    fail "the unit is not enabled (no multi-user.target.wants symlink)"
ok "unit enabled (multi-user.target.wants)"
if [[ -d /run/systemd/system ]]; then
    systemctl is-active --quiet "$unit" || fail "$unit is not active after install: $(systemctl status "$unit" 2>&1 | tail -n 5)"
    ok "$unit started by the package"
else
    echo "SKIPPED start of $unit: systemd is not running here (no /run/systemd/system), so the package enabled it without starting it"
fi

step "man pages and completions, as a user finds them"
if grep -qs '^path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then
    # Minimal container images keep dpkg from installing any man page (the checks above ran on
    # the package's own copies).
    echo "SKIPPED man after install: dpkg is told to exclude /usr/share/man here (/etc/dpkg/dpkg.cfg.d)"
else
    export MANPAGER=cat MANWIDTH=80 LC_ALL=C.UTF-8
    # man-db shows a page it formatted before (/var/cache/man/catN) when its date equals the
    # source's, and the package's pages carry the build day's date: a page formatted from an
    # earlier build of the same day (a previous run of this test) would be shown instead.
    rm -f /var/cache/man/cat5/shuffle-janitor.toml.5* /var/cache/man/cat8/shuffle-janitor.8*
    [[ $(man -w shuffle-janitor) == /usr/share/man/man8/shuffle-janitor.8.gz ]] ||
        fail "man -w shuffle-janitor: $(man -w shuffle-janitor 2>&1)"
    page=$(man shuffle-janitor 2>&1) || fail "man shuffle-janitor: $page"
    for want in "shuffle-janitor - Deletes stale Apache Spark shuffle files" "shuffle-janitor sweep" "--dry-run" \
        "EXIT STATUS" SIGHUP /etc/shuffle-janitor/config.toml /-/ready shuffle_janitor_reclaimed_bytes_total; do
        grep -qF -- "$want" <<<"$page" || fail "man shuffle-janitor lacks '$want'"
    done
    page=$(man 5 shuffle-janitor.toml 2>&1) || fail "man 5 shuffle-janitor.toml: $page"
    for key in $(sed -n 's/^\([a-z_]*\) = .*/\1/p' /etc/shuffle-janitor/config.toml); do
        grep -qE "^ +$key = " <<<"$page" || fail "man 5 shuffle-janitor.toml lacks the key $key"
    done
    unset MANPAGER MANWIDTH LC_ALL
    ok "man shuffle-janitor, man 5 shuffle-janitor.toml (every key of the installed config)"
fi

# bash-completion loads a command's completion from /usr/share/bash-completion/completions/ the
# first time the command is completed (_completion_loader); then complete -p finds it, and the
# function it names completes subcommands.
out=$(bash -c 'source /usr/share/bash-completion/bash_completion
    _completion_loader shuffle-janitor
    complete -p shuffle-janitor || exit 1
    COMP_WORDS=(shuffle-janitor sw) COMP_CWORD=1 COMP_LINE="shuffle-janitor sw" COMP_POINT=18
    fn=$(complete -p shuffle-janitor | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
    "$fn" shuffle-janitor sw shuffle-janitor
    printf "%s\n" "${COMPREPLY[@]}"' 2>&1) || fail "bash: no completion for shuffle-janitor: $out"
[[ $(sed -n 2p <<<"$out") == sweep ]] || fail "bash: 'shuffle-janitor sw<TAB>' did not complete to sweep: $out"
ok "bash: $(head -n1 <<<"$out"); 'shuffle-janitor sw<TAB>' -> sweep"
zsh_file=/usr/share/zsh/vendor-completions/_shuffle-janitor
zsh -n "$zsh_file" || fail "zsh -n $zsh_file: syntax"
out=$(zsh -fc 'autoload -Uz compinit && compinit -D && print -r -- ${_comps[shuffle-janitor]}' 2>&1)
[[ $out == _shuffle-janitor ]] || fail "zsh: compinit did not find _shuffle-janitor in its fpath (got '$out')"
ok "zsh: syntax, compinit finds _shuffle-janitor for shuffle-janitor"
fish_file=/usr/share/fish/vendor_completions.d/shuffle-janitor.fish
fish -n "$fish_file" || fail "fish -n $fish_file: syntax"
out=$(HOME=$tmp fish -c 'complete -C"shuffle-janitor sw"' 2>&1)
[[ $out == sweep$'\t'* ]] || fail "fish: 'shuffle-janitor sw<TAB>' did not complete to sweep (got '$out')"
ok "fish: syntax, 'shuffle-janitor sw<TAB>' -> sweep"
# A subcommand's options (`shuffle-janitor sweep --<TAB>`), in each shell, from the installed files.
bash tests/completions.sh /usr/share/bash-completion/completions/shuffle-janitor "$zsh_file" "$fish_file" ||
    fail "the installed completions"

# --- 4. As the package's user, with the unit's capabilities -----------------------------------
step "the installed binary as $user with the unit's capabilities, on another user's files"
caps=$(sed -n 's/^AmbientCapabilities=//p' "$installed_unit")
[[ -n $caps ]] || fail "no AmbientCapabilities= in the installed unit"
bset=$(sed -n 's/^CapabilityBoundingSet=//p' "$installed_unit")
[[ $caps == "$bset" ]] || fail "AmbientCapabilities= ($caps) differs from CapabilityBoundingSet= ($bset)"
capset=$(for c in $caps; do printf ',+%s' "$(tr 'A-Z' 'a-z' <<<"${c#CAP_}")"; done)
echo "capabilities: $caps"
as_daemon() { # as the package's user, with the unit's capabilities and NoNewPrivileges=yes
    setpriv --reuid="$user" --regid="$user" --clear-groups --no-new-privs \
        --inh-caps="-all$capset" --ambient-caps="-all$capset" --bounding-set="-all$capset" -- "$@"
}
as_user_without_caps() {
    setpriv --reuid="$user" --regid="$user" --clear-groups --no-new-privs \
        --inh-caps=-all --bounding-set=-all -- "$@"
}
# /tmp-like sticky root; a block store of user nobody, 0700, one NN dir 0700 (needs
# CAP_DAC_OVERRIDE), one sticky 1777 (needs CAP_FOWNER to unlink another user's file there).
mk_tree() {
    local root=$tmp/root store
    rm -rf "$root"
    mkdir -m 1777 "$root"
    store=$root/blockmgr-0b5e7f2a-3c1d-4e5f-8a9b-0c1d2e3f4a5b
    mkdir -p "$store/0c" "$store/11" "$store/2a"
    echo data >"$store/0c/shuffle_0_1_0.data"
    echo index >"$store/11/shuffle_0_1_0.index"
    echo data >"$store/2a/shuffle_0_2_0.data"
    echo data >"$store/2a/shuffle_0_3_0.data"
    chown -R nobody: "$store"
    chmod 0700 "$store" "$store/0c" "$store/11"
    chmod 1777 "$store/2a"
    touch -d '-7 hours' "$store"/*/*
    printf 'roots = ["%s"]\n' "$root" >"$tmp/config.toml"
    echo "$store"
}
summary() { python3 -c 'import json, sys
d = json.load(sys.stdin)
print(d["deleted_files"], d["skipped"].get("open", 0), sum(d["errors_by_op"].values()))'; }

store=$(mk_tree)
status=0
got=$(as_user_without_caps shuffle-janitor sweep --config "$tmp/config.toml" --format json 2>/dev/null | summary) || status=$?
[[ $status -eq 1 ]] || fail "without capabilities: exit status $status, expected 1 (errors)"
[[ $(find "$store" -type f | wc -l) -eq 4 ]] || fail "without capabilities, files were deleted anyway"
[[ $got == "0 "* && $got != *" 0" ]] || fail "without capabilities: expected nothing deleted and errors, got '$got' (deleted, open, errors)"
ok "without capabilities: nothing deleted, errors counted ($got: deleted, kept open, errors)"

# shuffle_0_3_0 is held open by a process of user nobody: only CAP_SYS_PTRACE lets the daemon's
# user see that, and then the unit is kept.
setpriv --reuid=nobody --regid=nogroup --clear-groups sleep 120 3<"$store/2a/shuffle_0_3_0.data" &
holder=$!
for _ in $(seq 50); do
    [[ -e /proc/$holder/fd/3 ]] && break
    sleep 0.1
done
got=$(as_daemon shuffle-janitor sweep --config "$tmp/config.toml" --format json 2>"$tmp/sweep.log" | summary) ||
    { cat "$tmp/sweep.log" >&2; fail "sweep as $user with the unit's capabilities failed"; }
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
holder=
left=$(find "$store" -type f -printf '%P\n')
[[ $got == "3 1 0" && $left == 2a/shuffle_0_3_0.data ]] ||
    fail "with the unit's capabilities: expected 3 deleted, 1 kept open, 0 errors, only shuffle_0_3_0.data left; got '$got', left: $left"
ok "with the unit's capabilities: deleted nobody's files in a 0700 store and a sticky dir, kept the one nobody held open"

# --- 5. Reinstall, upgrade, roll back, remove, purge ------------------------------------------
step "dpkg -i again (idempotent postinst)"
dpkg -i "$deb" >/dev/null
[[ $(getent passwd "$user" | cut -d: -f3) == "$uid" ]] || fail "reinstall changed $user's uid"
ok "reinstalled, same user"

step "upgrade to $(basename "$upgrade") and roll back, with a locally changed config"
echo '# local change' >>/etc/shuffle-janitor/config.toml
dpkg -i "$upgrade" >/dev/null
[[ $(dpkg-query -W -f='${Version}' "$pkg") == *-999 ]] || fail "the upgrade did not install revision 999"
grep -q '^# local change' /etc/shuffle-janitor/config.toml || fail "the upgrade replaced the changed config"
[[ $(getent passwd "$user" | cut -d: -f3) == "$uid" ]] || fail "the upgrade changed $user's uid"
dpkg -i "$deb" >"$tmp/downgrade.log" 2>&1 || { cat "$tmp/downgrade.log" >&2; fail "dpkg -i of the older .deb (rollback) failed"; }
[[ $(dpkg-query -W -f='${Version}' "$pkg") == "$(dpkg-deb -f "$deb" Version)" ]] || fail "the rollback did not install $(basename "$deb")"
grep -q '^# local change' /etc/shuffle-janitor/config.toml || fail "the rollback replaced the changed config"
[[ -L /etc/systemd/system/multi-user.target.wants/$unit ]] || fail "the unit is no longer enabled after upgrade and rollback"
shuffle-janitor check-config --config /etc/shuffle-janitor/config.toml >/dev/null || fail "check-config after the rollback"
ok "upgraded and rolled back: the changed config, the user and the enabled unit stay"

step "dpkg --remove keeps conffiles (and a local change to them), dpkg --purge removes everything"
dpkg --remove "$pkg" >/dev/null
[[ ! -e /usr/bin/shuffle-janitor ]] || fail "dpkg --remove left /usr/bin/shuffle-janitor"
grep -q '^# local change' /etc/shuffle-janitor/config.toml || fail "dpkg --remove did not keep the changed conffile"
ok "removed; the changed conffile stays until purge"
dpkg --purge "$pkg" >/dev/null
installed && fail "$pkg still installed after --purge"

leftovers=()
while read -r f; do
    # Directories shared with other packages (/etc, /usr/bin, ...) stay, of course.
    [[ -d $f ]] && dpkg-query -S "$f" >/dev/null 2>&1 && continue
    [[ -e $f || -L $f ]] && leftovers+=("$f")
done <"$tmp/files"
for f in /usr/bin/shuffle-janitor /etc/shuffle-janitor /etc/default/shuffle-janitor \
    /usr/lib/systemd/system/$unit /lib/systemd/system/$unit /usr/share/doc/$pkg \
    /usr/share/man/man8/shuffle-janitor.8.gz /usr/share/man/man5/shuffle-janitor.toml.5.gz \
    /usr/share/bash-completion/completions/shuffle-janitor /usr/share/zsh/vendor-completions/_shuffle-janitor \
    /usr/share/fish/vendor_completions.d/shuffle-janitor.fish /usr/share/lintian/overrides/$pkg \
    /etc/systemd/system/multi-user.target.wants/$unit \
    /var/lib/systemd/deb-systemd-helper-enabled/$unit \
    /var/lib/systemd/deb-systemd-helper-enabled/$unit.dsh-also \
    /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/$unit \
    /var/lib/systemd/deb-systemd-helper-masked/$unit; do
    [[ -e $f || -L $f ]] && leftovers+=("$f")
done
for f in /var/lib/dpkg/info/"$pkg".*; do
    [[ -e $f ]] && leftovers+=("$f")
done
getent passwd "$user" >/dev/null && leftovers+=("user $user")
getent group "$user" >/dev/null && leftovers+=("group $user")
((${#leftovers[@]} == 0)) || fail "left behind after dpkg --purge: ${leftovers[*]}"
ok "purged: no file, directory, conffile, unit symlink, dpkg state, user or group left"

echo "tests/package.sh: all passed ($((SECONDS - start)) s)"
echo "$deb"
