#!/usr/bin/env bash
# The tools `naac service`, `naac completions` and `naac man` are tested against
# (crates/naac/tests/service.rs): systemd-analyze (Debian's systemd package; it checks a
# unit even where systemd is not running), man and groff, and the shells bash, zsh and fish.
#
#   scripts/os-tools.sh install   install what is missing (Debian's packages; needs root)
#   scripts/os-tools.sh check     exit 3 unless all of them are here
set -euo pipefail

# command -> Debian package
declare -A PKG=([systemd-analyze]=systemd [man]=man-db [groff]=groff-base [bash]=bash [zsh]=zsh [fish]=fish)

missing() {
    local c
    for c in "${!PKG[@]}"; do
        command -v "$c" >/dev/null || echo "${PKG[$c]}"
    done | sort -u
}

case "${1:-}" in
install)
    mapfile -t need < <(missing)
    if ((${#need[@]})); then
        if ((EUID != 0)); then
            echo "os-tools.sh: installing ${need[*]} needs root (apt-get install ${need[*]})" >&2
            exit 2
        fi
        echo "os-tools.sh: installing ${need[*]} (Debian's packages)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
            apt-get update -q >/dev/null
            apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
        }
    fi
    ;;
check)
    mapfile -t need < <(missing)
    if ((${#need[@]})); then
        echo "missing: ${need[*]}" >&2
        exit 3
    fi
    ;;
*)
    echo "usage: scripts/os-tools.sh install|check" >&2
    exit 2
    ;;
esac
