#!/usr/bin/env bash
# The one-call GPU check: builds ringtune against the GPU machine's pip torch (CUDA libtorch) and
# runs what can only be seen there, in at most about 8 minutes, writing everything to one log.
#
#   bash bench/gpu_check.sh --prepare   here (Debian, with its package mirror): .gpu/ gets the
#                                       Debian libraries the GPU image lacks, as .deb files, and a
#                                       copy of ../shared/fixtures; .gpu/ is git-ignored (local
#                                       .git/info/exclude) and carried to the GPU machine
#   bash bench/gpu_check.sh --dry-run   prints every step's commands; runs the steps that need no
#                                       GPU (that the helpers parse, that .gpu/ is complete)
#   bash bench/gpu_check.sh             on the GPU machine (one H200, CUDA 13, pip torch 2.x with
#                                       peft, transformers; no network), e.g. through the device
#                                       tool: run(command="bash bench/gpu_check.sh", carry=[".gpu"])
#
# Steps (each timed, PASS/FAIL/SKIP in the summary; a failed step does not stop the others):
#   env        the GPU, torch, CUDA, compilers
#   unpack     the carried .deb files into .gpu/root (never into /), environment for them
#   configure  cmake against torch.utils.cmake_prefix_path, CUDA toolkit and cuDNN from the wheels
#   build      ringtune, tests; ldd shows libtorch_cuda (else training silently runs on the CPU)
#   logits     stories260k on CUDA in bfloat16 and float32 against the CPU in float32
#   generate   greedy generation on CUDA with and without the KV cache, and against llama2.c's
#   lora       a 20-step LoRA run in one process on CUDA, then under mpirun -np 1 with
#              distributed.backend nccl (same losses to a stated tolerance)
#   peft       the run's PEFT export loaded by transformers + peft: logits against ringtune's
#   speed      a LoRA step on an 8B-shaped random model (hidden 4096, FFN 14336, 32/8 heads,
#              vocab 128256; LAYERS of them, default 8) in bfloat16 at sequence 2048: tokens/s, MFU
#   tests      ctest with the time that is left (NCCL tests need a GPU per rank and skip otherwise)
#
# Output: $OUT/gpu_check.log (OUT set by the device tool), else ./gpu_check.log; the summary is
# also printed last. Environment: LAYERS (speed), BUDGET_S (default 480), JOBS (build, default nproc).
set -uo pipefail
cd "$(dirname "$0")/.."
root_dir=$PWD
mode=run
case "${1:-}" in
  --prepare) mode=prepare ;;
  --dry-run) mode=dry ;;
  "") ;;
  *) echo "usage: bash bench/gpu_check.sh [--prepare | --dry-run]" >&2; exit 2 ;;
esac

G=$root_dir/.gpu              # carried: debs/, shared/fixtures/; made on the GPU: root/, work/
R=$G/root                     # the unpacked Debian libraries
W=$G/work                     # scratch of the checks
B=$root_dir/build-gpu
log=${OUT:-$root_dir}/gpu_check.log
BUDGET_S=${BUDGET_S:-480}
LAYERS=${LAYERS:-8}
JOBS=${JOBS:-$(nproc)}
start=$(date +%s)

# Debian 12 packages the GPU image lacks (headers, CMake configs, libraries, OpenMPI's launcher),
# with the packages installed here that they depend on (bench/gpu/deb_closure.py), except the
# base system, compilers, other -dev packages and optional plugins.
PACKAGES=(libyaml-cpp-dev libspdlog-dev libfmt-dev libhdf5-openmpi-dev libsentencepiece-dev
          libopenmpi-dev openmpi-bin nlohmann-json3-dev libgtest-dev libpcre2-dev)
BASE_SYSTEM='^(libc6|libc-bin|libgcc-s1|libstdc\+\+6|gcc-12-base|zlib1g|libzstd1|liblzma5|libbz2-1.0|libssl3|libcrypt1|libselinux1|libpcre2-8-0|libcurl4|libcurl3-gnutls|libgnutls30|libkrb5-3|libgssapi-krb5-2|libldap-2.5-0|libnghttp2-14|librtmp1|libssh2-1|libpsl5|libidn2-0|libunistring2|libp11-kit0|libtasn1-6|libnettle8|libhogweed6|libgmp10|libffi8|libk5crypto3|libcom-err2|libkrb5support0|libkeyutils1|libsasl2-2|libsasl2-modules-db|libdb5.3|libbrotli1|debconf|dpkg|perl-base|libtinfo6|libudev1|libsystemd0|libcap2|libgcrypt20|libgpg-error0|liblz4-1|libmd0|libbsd0|sensible-utils|init-system-helpers|perl|perl-modules-5.36|libperl5.36|libgdbm6|libgdbm-compat4|ucf|coreutils|tar|debianutils|mount|libmount1|libblkid1|libuuid1|util-linux|libsmartcols1|procps|lsb-base|sysvinit-utils|libpam0g|libaudit1|libaudit-common|libcap-ng0|libncursesw6|libprocps8|libxxhash0|gcc.*|g\+\+.*|cpp.*|gfortran.*|libgfortran.*|flang.*|libflang.*|clang.*|libclang.*|llvm.*|libllvm.*|libmlir.*|libgcc-.*-dev|libstdc\+\+-.*-dev|libjs-.*|autoconf|automake|autotools-dev|libtool|m4|binutils.*|libc6-dev|libc-dev-bin|linux-libc-dev|libcrypt-dev|libnsl-dev|libtirpc.*|rpcsvc-proto|libgomp1|libitm1|libatomic1|libasan8|liblsan0|libtsan2|libubsan1|libquadmath0|libcc1-0|libisl23|libmpc3|libmpfr6|libctf.*|libjansson4|libgprofng0|python3.*|libpython3.*|libexpat1|libsqlite3-0|libreadline8|readline-common|libncurses6|media-types|tzdata|mime-support|netbase|libmpdec3|libnsl2|.*-dev|adduser|passwd|libpam.*|libsemanage.*|libsepol.*|openssh-client|libfido2.*|libcbor.*|libedit2|libx11.*|libxau6|libxcb1|libxdmcp6|libxext6|libxnvctrl0|libjpeg.*|catch2|googletest|libicu.*|libxml2|ocl-icd-libopencl1|libhwloc-plugins|libpciaccess0|libhdf5-openmpi-(cpp|fortran|hl).*)$'

# ---------------------------------------------------------------------------------------------
# Steps

step_env() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count(), "prefix", torch.utils.cmake_prefix_path)'
  nvcc --version | tail -2
  cmake --version | head -1
  c++ --version | head -1
  python3 -c 'import transformers, peft; print("transformers", transformers.__version__, "peft", peft.__version__)'
}

step_unpack() {
  rm -rf "$R" && mkdir -p "$R"
  for deb in "$G"/debs/*.deb; do dpkg-deb -x "$deb" "$R" || return 1; done
  # Debian names OpenMPI's commands through update-alternatives, which dpkg-deb -x does not run.
  for f in "$R"/usr/bin/*.openmpi; do ln -sf "$(basename "$f")" "${f%.openmpi}"; done
  echo "$(ls "$G"/debs | wc -l) packages unpacked into $R"
  test -x "$R/usr/bin/mpirun" && test -f "$R/usr/include/yaml-cpp/yaml.h" && test -f "$R/usr/include/hdf5/openmpi/hdf5.h"
}

# The environment of the unpacked libraries (relocated OpenMPI through OPAL_PREFIX; pkg-config
# through its sysroot) and of the wheels' CUDA libraries.
gpu_env() {
  local lib=$R/usr/lib/x86_64-linux-gnu
  export PATH=$R/usr/bin:$PATH
  export LD_LIBRARY_PATH=$lib:$lib/openmpi/lib:$lib/hdf5/openmpi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export OPAL_PREFIX=$R/usr PMIX_INSTALL_PREFIX=$R/usr
  export PKG_CONFIG_SYSROOT_DIR=$R PKG_CONFIG_PATH=$lib/pkgconfig:$R/usr/share/pkgconfig
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm=isolated OMPI_MCA_btl=self,vader
  SITE=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null)
  TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
}

step_configure() {
  gpu_env
  local lib=$R/usr/lib/x86_64-linux-gnu cudnn
  cudnn=$(ls -d "$SITE"/nvidia/cudnn "$SITE"/nvidia/cu*/ 2>/dev/null | while read -r d; do
    [ -f "$d/include/cudnn.h" ] && echo "$d" && break; done)
  echo "site-packages $SITE; torch cmake prefix $TORCH_PREFIX; cuDNN ${cudnn:-not found}"
  cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTORCH_CUDA_ARCH_LIST=9.0 \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$R/usr;$lib/cmake;$R/usr/share/cmake" \
    -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" \
    ${cudnn:+-DCUDNN_INCLUDE_PATH=$cudnn/include -DCUDNN_LIBRARY_PATH=$(ls "$cudnn"/lib/libcudnn.so* | head -1)} \
    -DRINGTUNE_HDF5_INCLUDE_DIR="$R/usr/include/hdf5/openmpi" \
    -DRINGTUNE_HDF5_LIBRARY="$lib/hdf5/openmpi/libhdf5.so" \
    -DMPI_C_HEADER_DIR="$lib/openmpi/include" -DMPI_C_LIB_NAMES=mpi \
    -DMPI_mpi_LIBRARY="$lib/openmpi/lib/libmpi.so" -DMPIEXEC_EXECUTABLE="$R/usr/bin/mpirun"
}

step_build() {
  gpu_env
  cmake --build "$B" -j "$JOBS" || return 1
  ldd "$B/ringtune" | grep -E 'torch|c10|nccl|cudart' || true
  ldd "$B/ringtune" | grep -q libtorch_cuda || { echo "libtorch_cuda is not linked: training would run on the CPU"; return 1; }
}

# Runs ringtune from the GPU build with the fixtures carried in .gpu/shared.
rt() { "$B/ringtune" "$@"; }
FIX=$G/shared/fixtures

step_logits() {
  gpu_env
  mkdir -p "$W"
  rt logits --model "$FIX/stories260k" --input "$FIX/stories260k/reference.safetensors" --output "$W/cpu32.safetensors" || return 1
  rt logits --model "$FIX/stories260k" --input "$FIX/stories260k/reference.safetensors" --output "$W/cuda32.safetensors" --device cuda || return 1
  rt logits --model "$FIX/stories260k" --input "$FIX/stories260k/reference.safetensors" --output "$W/cuda16.safetensors" --device cuda --dtype bfloat16 || return 1
  python3 bench/gpu/compare_logits.py "$W/cuda32.safetensors" "$W/cpu32.safetensors" --max-abs 2e-4 --label "CUDA fp32 vs CPU fp32" || return 1
  # bfloat16 has 8 bits of mantissa: logits up to ~15 agree to a few tenths, argmax nearly always.
  python3 bench/gpu/compare_logits.py "$W/cuda16.safetensors" "$W/cpu32.safetensors" --max-abs 0.5 --label "CUDA bf16 vs CPU fp32"
}

step_generate() {
  gpu_env
  local cached plain
  cached=$(rt generate --model "$FIX/stories260k" --prompt-ids 1 --max-new-tokens 64 --device cuda | head -1) || return 1
  plain=$(rt generate --model "$FIX/stories260k" --prompt-ids 1 --max-new-tokens 64 --device cuda --no-cache | head -1) || return 1
  echo "KV cache: $cached"
  echo "no cache: $plain"
  [ "$cached" = "$plain" ] || { echo "KV cache and recomputation differ"; return 1; }
  python3 - "$cached" "$FIX/stories260k/reference.json" <<'PY'
import json, sys
ids = [int(x) for x in sys.argv[1].split(",")]
ref = json.load(open(sys.argv[2]))["greedy_from_bos"]
ref = ref if ref[0] == 1 else [1] + ref
same = sum(a == b for a, b in zip(ids, ref))
print(f"against llama2.c's greedy continuation: {same}/{min(len(ids), len(ref))} ids equal")
sys.exit(0 if ids[:len(ref)] == ref[:len(ids)] else 1)
PY
}

# A tiny model and tokenizer (init-model, as the quickstart), LoRA on the quickstart chats.
lora_cfg() {  # output_dir, extra overrides...
  local out=$1; shift
  echo configs/quickstart/stage2.yaml initial_base_model_ckpt_path="$W/base" output_dir="$out" max_steps=20 \
    valid_path=null test_path=null eval.generation=none checkpoint_every_n_steps=0 dtype=float32 device=cuda "$@"
}

step_lora() {
  gpu_env
  rm -rf "$W/base" "$W/lora1" "$W/lora_nccl"
  sed 's/ //g; s/^/|/' configs/quickstart/corpus.txt > "$W/corpus.txt"
  rt init-model --output "$W/base" --corpus "$W/corpus.txt" --vocab-size 512 --hidden 128 --layers 4 --heads 4 \
    --kv-heads 2 --context 192 --seed 1122 || return 1
  # shellcheck disable=SC2046
  rt train $(lora_cfg "$W/lora1") || return 1
  # shellcheck disable=SC2046
  mpirun -np 1 "$B/ringtune" train $(lora_cfg "$W/lora_nccl" distributed.backend=nccl) || return 1
  grep -h 'ranks, device\|communicator' "$W/lora_nccl"/*.log 2>/dev/null || true
  python3 - "$W/lora1/metrics.jsonl" "$W/lora_nccl/metrics.jsonl" <<'PY'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(f"one process: loss {a[0]:.4f} -> {a[-1]:.4f}; mpirun -np 1 nccl: {b[0]:.4f} -> {b[-1]:.4f}; "
      f"worst relative difference {worst:.2e} (tolerance 1e-4)")
sys.exit(0 if len(a) == len(b) == 20 and a[-1] < a[0] and worst < 1e-4 else 1)
PY
}

step_peft() {
  gpu_env
  rt logits --model "$W/base" --adapter "$W/lora1/adapter" --input "$FIX/stories260k/reference.safetensors" \
    --output "$W/ringtune_adapter.safetensors" || return 1
  python3 bench/gpu/peft_logits.py --base "$W/base" --adapter "$W/lora1/adapter" \
    --input "$FIX/stories260k/reference.safetensors" --output "$W/peft.safetensors" || return 1
  python3 bench/gpu/compare_logits.py "$W/peft.safetensors" "$W/ringtune_adapter.safetensors" --max-abs 1e-3 \
    --label "transformers + peft vs ringtune (base + adapter, fp32)"
}

step_speed() {
  gpu_env
  rm -rf "$W/big" "$W/speed"
  python3 bench/gpu/random_llama.py "$W/big" --tokenizer "$FIX/tokenizers/llama3-hf" --layers "$LAYERS" || return 1
  python3 - "$W/big.jsonl" <<'PY'
import json, random, sys
random.seed(0)
words = open("configs/quickstart/corpus.txt", encoding="utf-8").read().split()
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for _ in range(200):  # about 2500 tokens each, cut to 2048: every sequence full
        f.write(json.dumps({"text": " ".join(random.choice(words) for _ in range(2000))}) + "\n")
PY
  rt train configs/quickstart/stage1.yaml initial_base_model_ckpt_path="$W/big" train_path="$W/big.jsonl" \
    output_dir="$W/speed" dtype=bfloat16 device=cuda context_length=2048 truncation=truncate_right \
    max_steps=8 global_batch_size=4 \
    train_batch_size_per_device=2 lora_config.r=16 lora_config.target_modules=all-linear lora_config.lora_dropout=0 \
    gradient_checkpointing=true checkpoint_every_n_steps=0 || return 1
  python3 - "$W/speed/metrics.jsonl" "$W/big/config.json" <<'PY'
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])][3:]  # after warm-up
c = json.load(open(sys.argv[2]))
tok_s = sum(x["tokens_per_s"] for x in m) / len(m)
d, f, L, V, s = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"], 2048
kv = d // c["num_attention_heads"] * c["num_key_value_heads"]
n_linear = L * (2 * d * d + 2 * d * kv + 3 * d * f) + V * d  # matrices a token passes through
# LoRA: forward 2N, backward input gradients 2N (frozen weights get none), gradient checkpointing
# recomputes the forward 2N; attention as PaLM's MFU counts it, 12*L*s*d per token.
flops = 6 * n_linear + 12 * L * s * d
mfu = tok_s * flops / 989e12
print(f"LoRA r16 all-linear, bf16, seq {s}, {L} layers of the 8B shape: {tok_s:.0f} tokens/s; "
      f"{flops / 1e9:.1f} GFLOP/token (6N + 12Lsd) -> MFU {100 * mfu:.1f}% of 989 TFLOP/s")
PY
}

step_tests() {
  gpu_env
  local left=$(( BUDGET_S - ($(date +%s) - start) - 20 ))
  [ "$left" -gt 30 ] || { echo "no time left for ctest"; return 2; }
  mkdir -p ../shared && [ -e ../shared/fixtures ] || ln -s "$FIX" ../shared/fixtures
  (cd "$B" && OMP_NUM_THREADS=2 timeout "$left" ctest -j 8 --timeout 120 --output-on-failure 2>&1 | tail -40)
}

# ---------------------------------------------------------------------------------------------
# Preparation (here, not on the GPU machine)

prepare() {
  command -v apt-get >/dev/null || { echo "--prepare needs apt-get (Debian 12)" >&2; return 1; }
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  grep -qx '/build-gpu/' .git/info/exclude 2>/dev/null || echo '/build-gpu/' >> .git/info/exclude
  rm -rf "$G/debs" && mkdir -p "$G/debs" "$G/shared"
  local deps
  deps=$(python3 bench/gpu/deb_closure.py --exclude "$BASE_SYSTEM" "${PACKAGES[@]}") || return 1
  (cd "$G/debs" && apt-get download $deps) || return 1
  rm -rf "$G/shared/fixtures" && cp -r ../shared/fixtures "$G/shared/fixtures"
  echo "prepared $G: $(ls "$G/debs" | wc -l) packages, $(du -sh "$G" | cut -f1) (carry limit 64 MiB)"
}

# ---------------------------------------------------------------------------------------------
# Driver

STEPS=(env unpack configure build logits generate lora peft speed tests)
declare -A result seconds

run_step() {
  local name=$1 t0 rc
  t0=$(date +%s)
  echo "==== $name" | tee -a "$log"
  if [ $(( $(date +%s) - start )) -gt "$BUDGET_S" ]; then
    result[$name]=SKIP; echo "out of time budget" | tee -a "$log"; return
  fi
  "step_$name" >> "$log" 2>&1
  rc=$?
  seconds[$name]=$(( $(date +%s) - t0 ))
  case $rc in 0) result[$name]=PASS ;; 2) result[$name]=SKIP ;; *) result[$name]=FAIL ;; esac
  tail -5 "$log" | sed 's/^/    /'
}

case $mode in
  prepare)
    prepare ;;
  dry)
    echo "bench/gpu_check.sh --dry-run: the steps run on the GPU machine, in this order"
    for s in "${STEPS[@]}"; do echo; echo "==== $s"; declare -f "step_$s" | tail -n +3 | head -n -1; done
    echo; echo "==== checks that need no GPU"
    ok=0
    for py in bench/gpu/*.py; do python3 -m py_compile "$py" && echo "parses: $py" || ok=1; done
    for f in configs/quickstart/stage1.yaml configs/quickstart/stage2.yaml configs/quickstart/corpus.txt; do
      [ -f "$f" ] && echo "present: $f" || { echo "missing: $f"; ok=1; }
    done
    if [ -d "$G/debs" ]; then
      echo "carried: $(ls "$G"/debs/*.deb | wc -l) .deb files, $(du -sh "$G" | cut -f1)"
      for p in "${PACKAGES[@]}"; do ls "$G"/debs/"${p}"_*.deb >/dev/null 2>&1 || { echo "missing package: $p"; ok=1; }; done
      [ -f "$G/shared/fixtures/stories260k/reference.safetensors" ] || { echo "missing: carried fixtures"; ok=1; }
    else
      echo "not prepared: run bash bench/gpu_check.sh --prepare before carrying .gpu"
    fi
    exit $ok ;;
  run)
    : > "$log"
    echo "ringtune GPU check, $(date -u), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" | tee -a "$log"
    [ -d "$G/debs" ] || { echo "no .gpu/debs: run bash bench/gpu_check.sh --prepare here and carry .gpu" | tee -a "$log"; exit 2; }
    for s in "${STEPS[@]}"; do run_step "$s"; done
    {
      echo; echo "==== summary ($(( $(date +%s) - start )) s)"
      for s in "${STEPS[@]}"; do printf '  %-10s %-4s %s\n' "$s" "${result[$s]:-SKIP}" "${seconds[$s]:+${seconds[$s]} s}"; done
    } | tee -a "$log"
    for s in "${STEPS[@]}"; do [ "${result[$s]:-SKIP}" = FAIL ] && exit 1; done
    exit 0 ;;
esac
