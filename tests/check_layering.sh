#!/usr/bin/env bash
# Checks the dependency direction of the sources:
#   - model/ includes neither distributed/ nor src/; distributed/ includes neither model/ nor src/;
#   - the folders of src/ (cli, config, data, io, optim, options, template, tokenizer, train)
#     include each other without a loop (the folder graph sorts topologically; tsort names a loop
#     if any), and the files directly in src/ (error.h, log.*, test_hooks.*, utf8.h) include no
#     src/ folder (main.cpp, the entry point, and pch.h excepted).
# Prints the folder graph in dependency order on success.
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

# src/ folders: one edge "from to" per include of another folder.
edges=$(
  cd "$root/src" || exit 1
  for f in $(find . -mindepth 2 \( -name '*.h' -o -name '*.cpp' \) | sort); do
    from=$(echo "$f" | cut -d/ -f2)
    grep -oE '#include *"src/[a-z_]+/' "$f" | sed -E 's#.*"src/([a-z_]+)/#\1#' |
      while read -r to; do [ "$to" != "$from" ] && echo "$from $to"; done
  done | sort -u
)
for f in "$root"/src/*.h "$root"/src/*.cpp; do
  case "$(basename "$f")" in main.cpp | pch.h) continue ;; esac
  if grep -nE '#include *"src/[a-z_]+/' "$f"; then
    echo "layering: $f is a base file of src/ and must not include a src/ folder"; bad=1
  fi
done
if ! order=$(echo "$edges" | tsort 2>&1); then
  echo "$order"
  echo "layering: the src/ folders include each other in a loop (edges: $(echo "$edges" | tr '\n' ';'))"
  bad=1
else
  echo "layering: src/ folders, each before what it includes: $(echo "$order" | tr '\n' ' ')"
fi
[ $bad -eq 0 ] && echo "layering: ok"
exit $bad
