#!/usr/bin/env bash
# Fails if model/ includes distributed/ or src/ headers, or distributed/ includes model/ or src/.
set -u
root=${1:-.}
bad=0
check() {  # folder, forbidden prefixes...
  local dir=$1; shift
  for p in "$@"; do
    if grep -rnE "#include *[\"<](\.\./)*$p/" "$root/$dir" --include='*.h' --include='*.cpp'; then
      echo "layering: $dir/ must not include $p/"; bad=1
    fi
  done
}
check model distributed src
check distributed model src
[ $bad -eq 0 ] && echo "layering: ok"
exit $bad
