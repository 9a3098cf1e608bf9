#!/usr/bin/env bash
# The Python client (clients/python): installs it with pytest and mypy into a virtualenv
# this script creates, checks its types (mypy --strict) and runs its tests against a real
# `naac node` they start (the binary in NAAC_BIN, default the workspace's debug build,
# built here when missing).
#
#   scripts/python-client.sh test
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}" in
test) ;;
*)
    echo "usage: scripts/python-client.sh test" >&2
    exit 2
    ;;
esac

target="${CARGO_TARGET_DIR:-$PWD/target}"
export NAAC_BIN="${NAAC_BIN:-$target/debug/naac}"
if [[ ! -x "$NAAC_BIN" ]]; then
    cargo build -p naac
fi

venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "./clients/python[test]"
# The package as installed, not the source tree, is what the tests import.
rm -rf clients/python/build clients/python/*.egg-info
cd clients/python/tests
"$venv/bin/python" -m mypy --strict --config-file ../pyproject.toml -p naac
"$venv/bin/python" -m mypy --strict --config-file ../pyproject.toml .
"$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir . .
