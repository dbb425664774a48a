#!/usr/bin/env bash
# ctest gpu_check_dry_run: bench/gpu_check.sh --dry-run prints every step of the GPU check in
# order, its Python helpers parse, and it exits 0 (the GPU parts themselves need a GPU machine).
set -u
root=${1:-.}
out=$(cd "$root" && bash bench/gpu_check.sh --dry-run 2>&1)
rc=$?
echo "$out"
bad=0
[ $rc -eq 0 ] || { echo "gpu_check --dry-run: exit $rc"; bad=1; }
prev=0
for s in env unpack configure build logits generate lora peft speed tests; do
  line=$(echo "$out" | grep -n "^==== $s\$" | head -1 | cut -d: -f1)
  if [ -z "$line" ]; then echo "gpu_check --dry-run: step $s not printed"; bad=1; continue; fi
  [ "$line" -gt "$prev" ] || { echo "gpu_check --dry-run: step $s out of order"; bad=1; }
  prev=$line
done
for py in random_llama compare_logits peft_logits deb_closure; do
  echo "$out" | grep -q "^parses: bench/gpu/$py.py" || { echo "gpu_check --dry-run: bench/gpu/$py.py not checked"; bad=1; }
done
# Usage errors are refused.
(cd "$root" && bash bench/gpu_check.sh --bogus >/dev/null 2>&1); [ $? -eq 2 ] || { echo "gpu_check: --bogus not refused"; bad=1; }
[ $bad -eq 0 ] && echo "gpu_check_dry_run: ok"
exit $bad
