#!/usr/bin/env bash
# Every Python >= 3.11 that runs on this machine, newest first, one path a line:
# python3.1x on the PATH, and pyenv's installed versions (whose shims may not be active).
set -uo pipefail
candidates=()
for minor in 14 13 12 11; do
  candidates+=("python3.$minor")
done
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root 2>/dev/null)
  for bin in "$root"/versions/3.1[1-9]*/bin/python3; do
    [[ -x "$bin" ]] && candidates+=("$bin")
  done
fi
declare -A seen=()
for candidate in "${candidates[@]}"; do
  version=$("$candidate" -c 'import sys; v = sys.version_info; print(f"{v[0]}.{v[1]}") if v >= (3, 11) else exit(1)' 2>/dev/null) || continue
  [[ -n "${seen[$version]:-}" ]] && continue
  seen[$version]=1
  echo "$version $(command -v "$candidate" 2>/dev/null || echo "$candidate")"
done | sort -t. -k2 -n -r | cut -d' ' -f2
