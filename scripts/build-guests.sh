#!/usr/bin/env bash
# Builds the example guest modules (wasm32-wasip1) and copies them to examples/<name>/<name>.wasm.
#
#   scripts/build-guests.sh          build and update the committed modules
#   scripts/build-guests.sh --check  build, compare with the committed modules, change nothing;
#                                    exits 1 and names the stale modules if any differ
#
# The build is reproducible: file-system paths that would otherwise end up in the modules
# (this checkout, the cargo home, the toolchain sysroot and the target directory) are remapped
# to fixed prefixes, so the bytes depend only on the sources, Cargo.lock and the toolchain.
#
# Environment: NAAC_GUEST_TARGET_DIR overrides the cargo target directory
# (default: ~/.cache/naac-guest-target, kept apart from the workspace's own target/).
set -euo pipefail

GUESTS=(pi mandelbrot primes testkit)
TARGET=wasm32-wasip1
PROFILE=guest

usage() {
    echo "usage: $0 [--check]" >&2
    exit 2
}

check=false
case $# in
    0) ;;
    1) [[ $1 == --check ]] || usage; check=true ;;
    *) usage ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$root"

# A machine's own toolchain may lack the guest target, and a new machine cannot download it.
# NAAC_NO_GUEST_TARGET=1 simulates that (to test CI on such a machine without uninstalling).
have_target() {
    [[ -z ${NAAC_NO_GUEST_TARGET:-} ]] && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"
}
if ! have_target; then
    if $check; then
        # The committed modules stay the source of truth; they are checked where the target is.
        echo "skipped: the $TARGET target is not installed here (it cannot be downloaded on a new machine); the committed guest modules are used as they are"
        exit 0
    fi
    if [[ -n ${NAAC_NO_GUEST_TARGET:-} ]] || ! rustup target add "$TARGET"; then
        echo "error: the $TARGET target is not installed and could not be added; install it with 'rustup target add $TARGET' where a toolchain download is possible" >&2
        exit 1
    fi
fi

target_dir="${NAAC_GUEST_TARGET_DIR:-$HOME/.cache/naac-guest-target}"
mkdir -p "$target_dir"
target_dir="$(cd "$target_dir" && pwd -P)"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
sysroot="$(rustc --print sysroot)"

# Flags are passed 0x1f-separated through CARGO_ENCODED_RUSTFLAGS so that paths containing
# spaces survive; any RUSTFLAGS already set are kept (split on whitespace, as cargo does).
flags=()
if [[ -n ${RUSTFLAGS:-} ]]; then
    read -r -a flags <<<"$RUSTFLAGS"
fi
flags+=(
    "--remap-path-prefix=$root=/naac"
    "--remap-path-prefix=$cargo_home=/cargo"
    "--remap-path-prefix=$sysroot=/rustc"
    "--remap-path-prefix=$target_dir=/target"
)
# (When several prefixes match a path, rustc applies the last one given.)
encoded="$(IFS=$'\x1f'; printf '%s' "${flags[*]}")"

packages=()
for guest in "${GUESTS[@]}"; do
    packages+=(-p "naac-example-$guest")
done

echo "building guest modules (target $TARGET, profile $PROFILE, target dir $target_dir)" >&2
env -u RUSTFLAGS CARGO_ENCODED_RUSTFLAGS="$encoded" CARGO_TARGET_DIR="$target_dir" \
    cargo build --profile "$PROFILE" --target "$TARGET" "${packages[@]}"

built="$target_dir/$TARGET/$PROFILE"

if ! $check; then
    for guest in "${GUESTS[@]}"; do
        install -m 0644 "$built/$guest.wasm" "examples/$guest/$guest.wasm"
        echo "examples/$guest/$guest.wasm: $(wc -c <"examples/$guest/$guest.wasm") bytes" >&2
    done
    exit 0
fi

# --check: snapshot the fresh build in a temporary directory and compare.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
stale=0
for guest in "${GUESTS[@]}"; do
    cp "$built/$guest.wasm" "$scratch/$guest.wasm"
    committed="examples/$guest/$guest.wasm"
    if [[ ! -f $committed ]]; then
        echo "stale: $committed is missing"
        stale=1
    elif ! cmp -s "$scratch/$guest.wasm" "$committed"; then
        echo "stale: $committed differs from a fresh build"
        stale=1
    fi
done
if ((stale)); then
    echo "run scripts/build-guests.sh to update the guest modules" >&2
    exit 1
fi
echo "guest modules are up to date"
