#!/usr/bin/env python3
"""The Debian packages to carry to the GPU machine: the given packages and, recursively, the
installed packages they depend on (for an alternative or a virtual package, the one installed
here), without those matching the exclusion pattern (the base system and compilers every image
has; the packages named on the command line are always kept). Reads this machine's dpkg database; prints one package name a line.

  python3 bench/gpu/deb_closure.py --exclude REGEX PACKAGE...
"""
import argparse
import re
import subprocess
import sys


def installed():
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Status}\t${Provides}\t${Depends}\t${Pre-Depends}\n"],
                         capture_output=True, text=True, check=True).stdout
    pkgs, provides = {}, {}
    for line in out.splitlines():
        name, status, prov, dep, predep = (line.split("\t") + [""] * 5)[:5]
        if not status.endswith("installed") or "not-installed" in status or "config-files" in status:
            continue
        pkgs[name] = ",".join(x for x in (dep, predep) if x)
        for p in prov.split(","):
            p = p.strip().split(" ")[0]
            if p:
                provides.setdefault(p, name)
    return pkgs, provides


def names(field):
    """Each dependency of a Depends field as its list of alternatives (names only)."""
    for group in field.split(","):
        alts = [re.sub(r"\s*\(.*?\)", "", a).strip().split(":")[0] for a in group.split("|")]
        alts = [a for a in alts if a]
        if alts:
            yield alts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exclude", default="^$")
    ap.add_argument("packages", nargs="+")
    a = ap.parse_args()
    exclude = re.compile(a.exclude)
    pkgs, provides = installed()
    missing = [p for p in a.packages if p not in pkgs]
    if missing:
        print("not installed here: " + " ".join(missing), file=sys.stderr)
        return 1
    seen, todo = set(), list(a.packages)
    while todo:
        p = todo.pop()
        if p in seen or (exclude.search(p) and p not in a.packages):
            continue
        seen.add(p)
        for alts in names(pkgs.get(p, "")):
            chosen = next((x for x in alts if x in pkgs), None) or next((provides[x] for x in alts if x in provides), None)
            if chosen:
                todo.append(chosen)
    print("\n".join(sorted(seen)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
