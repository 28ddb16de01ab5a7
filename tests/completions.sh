#!/usr/bin/env bash
# The shell completions, completed in real shells: bash, zsh and fish (Debian's), each loading
# the script the way it loads it for a user, then completing a command name, a subcommand's
# options (`shuffle-janitor sweep --<TAB>`) and a hyphenated subcommand's options.
#
# Usage: tests/completions.sh BASH_SCRIPT ZSH_SCRIPT FISH_SCRIPT
# (tests/deploy.sh runs it on the release tarball's completions/, tests/package.sh on the files
# the .deb installed.) Needs bash, zsh and fish; says SKIPPED for a shell that is missing.
set -euo pipefail
[[ $# -eq 3 ]] || { echo "usage: $0 BASH_SCRIPT ZSH_SCRIPT FISH_SCRIPT" >&2; exit 2; }
bash_file=$(realpath "$1") zsh_file=$(realpath "$2") fish_file=$(realpath "$3")

fail() {
    echo "tests/completions.sh: FAILED: $*" >&2
    exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# What each completion must offer: LINE|WORDS (all of them), LINE|!WORD (not that one).
cases=(
    "shuffle-janitor sw|sweep"
    "shuffle-janitor sweep --|--dry-run --purge --config --format"
    "shuffle-janitor sweep --|!--follow"
    "shuffle-janitor check-config --|--config"
    "shuffle-janitor --log-f|--log-format"
)
# check SHELL LINE OFFERED: OFFERED (one candidate a line) against the cases for LINE.
check() {
    local shell=$1 line=$2 offered=$3 c want w
    for c in "${cases[@]}"; do
        [[ ${c%%|*} == "$line" ]] || continue
        want=${c#*|}
        for w in $want; do
            if [[ $w == !* ]]; then
                ! grep -qxF -- "${w#!}" <<<"$offered" || fail "$shell: '$line<TAB>' offers ${w#!}: $(tr '\n' ' ' <<<"$offered")"
            else
                grep -qxF -- "$w" <<<"$offered" || fail "$shell: '$line<TAB>' does not offer $w: $(tr '\n' ' ' <<<"$offered")"
            fi
        done
    done
}
lines=()
for c in "${cases[@]}"; do
    l=${c%%|*}
    [[ " ${lines[*]-} " == *" $l "* ]] || lines+=("$l")
done

# bash: the script's `complete -F` function, called as readline calls it (words, index, line).
for line in "${lines[@]}"; do
    offered=$(bash --norc --noprofile -c '
        source "$1"
        fn=$(complete -p shuffle-janitor | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
        read -ra COMP_WORDS <<<"$2"
        [[ $2 == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) COMP_LINE=$2 COMP_POINT=${#2}
        "$fn" shuffle-janitor "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf "%s\n" "${COMPREPLY[@]}"' _ "$bash_file" "$line" 2>&1) || fail "bash: $offered"
    check bash "$line" "$offered"
done
echo "ok: bash completes ${#lines[@]} lines, among them 'shuffle-janitor sweep --<TAB>'"

# fish: complete -C prints "candidate<TAB>description" lines.
if command -v fish >/dev/null 2>&1; then
    for line in "${lines[@]}"; do
        offered=$(HOME=$tmp XDG_CONFIG_HOME=$tmp fish --no-config -c 'source $argv[1]; complete -C $argv[2]' "$fish_file" "$line" 2>&1 | cut -f1) ||
            fail "fish: $offered"
        check fish "$line" "$offered"
    done
    echo "ok: fish completes ${#lines[@]} lines"
else
    echo "SKIPPED fish: not installed"
fi

# zsh: an interactive zsh on a pseudo-terminal (zpty), with compinit finding _shuffle-janitor in
# its fpath; compadd is wrapped to write each match it is given to a file, and a TAB is typed.
if command -v zsh >/dev/null 2>&1; then
    mkdir "$tmp/fpath"
    cp "$zsh_file" "$tmp/fpath/_shuffle-janitor"
    cat >"$tmp/drive.zsh" <<'ZSH'
zmodload zsh/zpty || exit 3
fp=$1 out=$2 line=$3
zpty z zsh -f -i
zpty -w z "PS1=; fpath=($fp \$fpath); autoload -Uz compinit; compinit -u -D"
# Matches given with -O, -A or -D are not offered (they are collected or filtered): passed on.
zpty -w z 'compadd() { local -a m; if (( ${@[(I)-[OAD]]} )); then builtin compadd "$@"; return; fi; builtin compadd -O m "$@"; print -rl -- $m >>'"$out"'; builtin compadd "$@"; }'
zpty -w z 'bindkey "^I" complete-word'
zpty -w -n z "$line"$'\t'
for i in {1..50}; do [[ -s $out ]] && break; sleep 0.1; done
sleep 0.3
zpty -d z
ZSH
    for line in "${lines[@]}"; do
        out=$tmp/zsh-matches
        : >"$out"
        HOME=$tmp zsh -f "$tmp/drive.zsh" "$tmp/fpath" "$out" "$line" >/dev/null 2>&1 || true
        offered=$(sort -u "$out")
        [[ -n $offered ]] || fail "zsh: '$line<TAB>' offered nothing"
        check zsh "$line" "$offered"
    done
    echo "ok: zsh completes ${#lines[@]} lines"
else
    echo "SKIPPED zsh: not installed"
fi
