#!/usr/bin/env bash
# Builds every C plugin under plugins/ (<name>/<name>.c -> <name>/<name>.wasm) with clang
# for wasm32, without libc; never touches anything outside plugins/ except installing
# clang and lld when allowed.
#
#   plugins/build.sh           build what changed (a stamp records source, flags and
#                              clang version; up to date = no compiler run)
#   plugins/build.sh --force   rebuild everything
#   plugins/build.sh --check   rebuild everything into a temp dir and fail (exit 1) if a
#                              committed .wasm differs from what its source builds to
#
# clang and lld come from Debian (`apt-get install -y clang lld`, about 8 s); they are
# installed automatically when missing and CI=true or running as root.
# Exit codes: 0 ok, 1 --check found a difference, 2 cannot build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
here=$(pwd)

mode=build
case "${1:-}" in
  "") ;;
  --force) mode=force ;;
  --check) mode=check ;;
  -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "build.sh: unknown option \`$1\` (try --help)" >&2; exit 2 ;;
esac

# The ABI v1 build: no libc, no entry point, exports named in the source with
# export_name. -mbulk-memory lowers memcpy to memory.copy (no libc to call).
# The stack is 64 KiB (wasm-ld's default, written out). Initial memory is 256 KiB:
# stack + data + the SDK's result buffers + a typical input fit without memory.grow,
# which per call costs more than the whole check (mprotect, then a reset on reuse).
CFLAGS=(--target=wasm32 -O2 -nostdlib -std=c11 -Wall -Wextra -Werror -mbulk-memory
        -ffile-prefix-map="$here"=. -I sdk
        -Wl,--no-entry -Wl,--export-dynamic -Wl,-z,stack-size=65536
        -Wl,--initial-memory=262144 -Wl,--strip-debug)

ensure_toolchain() {
  if command -v clang >/dev/null 2>&1 && command -v wasm-ld >/dev/null 2>&1; then
    return 0
  fi
  if [[ "${CI:-}" == "true" || "$(id -u)" == "0" ]]; then
    echo "build.sh: installing clang and lld" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq clang lld >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq clang lld >/dev/null; }
  fi
  if ! command -v clang >/dev/null 2>&1 || ! command -v wasm-ld >/dev/null 2>&1; then
    echo "build.sh: clang and wasm-ld are needed: apt-get install -y clang lld" >&2
    exit 2
  fi
}

sha() { sha256sum "$@" | cut -c1-64; }

# What a build depends on: the plugin's sources, the SDK header, the flags, the compiler.
stamp_for() {
  local dir=$1
  {
    cat "$dir"/*.c sdk/*.h
    printf '%s\n' "${CFLAGS[@]}"
    clang --version | head -n1
  } | sha256sum | cut -c1-64
}

compile() { # dir out
  local dir=$1 out=$2 name
  name=$(basename "$dir")
  clang "${CFLAGS[@]}" -o "$out" "$dir/$name.c"
}

plugins=()
for c in */*.c; do
  dir=$(dirname "$c")
  [[ "$dir" == sdk ]] && continue
  [[ "$c" == "$dir/$dir.c" ]] || { echo "build.sh: \`$c\`: a plugin's source must be <name>/<name>.c" >&2; exit 2; }
  plugins+=("$dir")
done
if [[ ${#plugins[@]} -eq 0 ]]; then
  echo "build.sh: no C plugins found"
  exit 0
fi

ensure_toolchain
status=0
case $mode in
  build|force)
    for dir in "${plugins[@]}"; do
      out="$dir/$dir.wasm"
      stamp_file="$dir/.$dir.wasm.stamp"
      want=$(stamp_for "$dir")
      if [[ $mode == build && -f "$out" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$want" ]]; then
        echo "build.sh: $out is up to date"
        continue
      fi
      compile "$dir" "$out.tmp"
      mv "$out.tmp" "$out"
      chmod 644 "$out"
      echo "$want" > "$stamp_file"
      echo "build.sh: built $out ($(wc -c < "$out") bytes, sha256 $(sha "$out"))"
    done
    ;;
  check)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    for dir in "${plugins[@]}"; do
      out="$dir/$dir.wasm"
      compile "$dir" "$tmp/$dir.wasm"
      if [[ ! -f "$out" ]]; then
        echo "build.sh: $out is missing (run plugins/build.sh)" >&2
        status=1
      elif cmp -s "$out" "$tmp/$dir.wasm"; then
        echo "build.sh: $out matches its source (sha256 $(sha "$out"))"
      else
        echo "build.sh: $out differs from what $dir/$dir.c builds to with $(clang --version | head -n1)" >&2
        echo "build.sh:   committed $(sha "$out")  rebuilt $(sha "$tmp/$dir.wasm")" >&2
        echo "build.sh:   committed one was built by: $(grep -ao 'clang version [0-9.]*' "$out" | head -n1 || echo unknown)" >&2
        status=1
      fi
    done
    ;;
esac
exit $status
