#!/usr/bin/env bash
# Headless Chromium and ChromeDriver for the dashboard's browser tests
# (crates/naac/tests/dashboard.rs).
#
#   scripts/chromium.sh install   install Debian's chromium and chromium-driver if missing
#                                 (needs root); prints the chromedriver path as the last line
#   scripts/chromium.sh path      print the chromedriver path, or exit 3 if there is none
#
# The tests find chromedriver on PATH (or in NAAC_CHROMEDRIVER) and chromium at
# /usr/bin/chromium (or NAAC_CHROMIUM). They start Chromium headless, without its sandbox
# (CI runs as root), with background networking off and a fresh profile, and only ever
# open pages on 127.0.0.1.
set -euo pipefail

driver() {
    if [[ -n "${NAAC_CHROMEDRIVER:-}" ]]; then
        echo "$NAAC_CHROMEDRIVER"
    else
        command -v chromedriver
    fi
}

case "${1:-}" in
install)
    if ! driver >/dev/null || ! [[ -x "${NAAC_CHROMIUM:-/usr/bin/chromium}" ]]; then
        if ((EUID != 0)); then
            echo "chromium.sh: installing chromium needs root (apt-get install chromium chromium-driver)" >&2
            exit 2
        fi
        echo "chromium.sh: installing chromium and chromium-driver (Debian's packages)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || {
            apt-get update -q >/dev/null
            apt-get install -y -q chromium chromium-driver >/dev/null
        }
    fi
    driver
    ;;
path)
    driver || exit 3
    ;;
*)
    echo "usage: scripts/chromium.sh install|path" >&2
    exit 2
    ;;
esac
