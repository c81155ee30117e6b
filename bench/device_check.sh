#!/usr/bin/env bash
# The ONE script a lent GPU runs (target: under 8 minutes). Each part has its own timeout; a failing
# part is reported and the rest still run. Writes bench/results/device_check.md and, when $OUT is set
# (the device runner), $OUT/device_check.md + the logs; the markdown also goes to stdout.
#
#   bash bench/device_check.sh            # on the GPU machine (repo root or anywhere)
#   bash bench/device_check.sh --cpu      # (= --dry-run) the tiny shapes on the CPU: checks that it starts
#
# Parts: 1. memory profiles: one CFG step per task (T2V-A14B width @832x480x81, TI2V-5B @1280x704x121)
#        and profile (none/expert/block, +fp8 when wan.quant exists): peak VRAM, s/step vs resident
#        (bench/bench_memory.py device); 2. ours vs diffusers resident at the A14B width (bench/bench_gpu.py);
#        3. LoRA cost (bench/bench_lora.py); 4. the CPU memory bench (bench/bench_memory.py);
#        5. multi-GPU code path at world size 1 vs plain, s/step (bench/bench_comm.py overhead; <= 1.02x);
#        6. attention backends and compile at the TI2V-5B 720p token count (bench/bench_gpu.py --variants):
#        ours SDPA / compiled / Sage / FlashAttention vs diffusers plain / compiled, per-step time and
#        compile time (target: ours compiled <= 0.9x diffusers compiled). The report is copied to $OUT
#        after every part, so a run cut short still returns the parts it finished;
#        7. step cache: effective s/step per cache setting at 32760 tokens (bench/bench_cache.py device).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=gpu
for a in "$@"; do case "$a" in --cpu|--dry-run) MODE=cpu ;; *) echo "unknown option $a" >&2; exit 2 ;; esac; done
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
PY=${PYTHON:-python}
RES=bench/results/device_check
mkdir -p "$RES"
REPORT="$RES/device_check.md"
FAILED=()
: > "$REPORT"

part() {  # part NAME TIMEOUT_S CMD...
  local name=$1 limit=$2; shift 2
  local log="$RES/$name.log" t0=$SECONDS rc=0
  echo "== $name (limit ${limit}s): $*" >&2
  timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1 || rc=$?
  { echo "## $name"; echo; echo "\`$*\` — rc $rc, $((SECONDS - t0)) s"; echo
    if [ "$rc" -eq 0 ]; then grep -E '^(\||[A-Z][a-zA-Z]+:|CPU|GPU|Device)' "$log" || tail -n 20 "$log"
    else FAILED+=("$name (rc $rc)"); echo '```'; tail -n 25 "$log"; echo '```'; fi
    echo; } >> "$REPORT"
  if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; cp "$REPORT" "$log" "$OUT"/ 2>/dev/null || true; fi
  return 0
}

{ echo "# device_check ($MODE) $(date -u +%FT%TZ)"; echo
  "$PY" -c 'import torch,sys; print(f"torch {torch.__version__}, CUDA {torch.cuda.is_available()}" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))' 2>&1 || true
  echo; } >> "$REPORT"

if [ "$MODE" = gpu ]; then
  # part timeouts sum to <= 480 s (the device budget is 15 min per session, start-up included)
  part profiles 170 "$PY" bench/bench_memory.py device --tasks ti2v-5B t2v-A14B --profiles none expert block --timeout 80
  part vs_diffusers 40 "$PY" bench/bench_gpu.py --configs a14b-10l --steps 2
  part lora 25 "$PY" bench/bench_lora.py --repeats 3
  part cpu_memory 25 "$PY" bench/bench_memory.py --dim 512 --layers 4
  part dist_world1 40 "$PY" bench/bench_comm.py overhead --task ti2v-5B --layers 8 --steps 3
  part attention_compile 130 "$PY" bench/bench_gpu.py --configs 5b --steps 3 \
    --variants ours ours-compile ours-sage ours-fa diffusers diffusers-compile
  part cache 50 "$PY" bench/bench_cache.py device --layers 1 --steps 40
else
  part profiles 240 "$PY" bench/bench_memory.py device --tasks tiny --device cpu --profiles none expert block --timeout 60
  part vs_diffusers 150 "$PY" bench/bench_gpu.py --device cpu --configs tiny --steps 2
  part lora 120 "$PY" bench/bench_lora.py --dim 128 --layers 2 --repeats 2
  part cpu_memory 240 "$PY" bench/bench_memory.py --dim 256 --layers 4
  part dist_world1 120 "$PY" bench/bench_comm.py overhead --task tiny --layers 2 --device cpu
  part attention_compile 300 "$PY" bench/bench_gpu.py --device cpu --configs tiny --steps 3 --compile-backend aot_eager \
    --variants ours ours-compile ours-sage ours-fa diffusers diffusers-compile
  part cache 120 "$PY" bench/bench_cache.py device --device cpu --layers 2 --steps 12
fi

{ echo "## summary"; echo
  if [ ${#FAILED[@]} -eq 0 ]; then echo "all parts passed"; else echo "FAILED: ${FAILED[*]}"; fi; } >> "$REPORT"
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; cp "$REPORT" "$RES"/*.log "$OUT"/ 2>/dev/null || true; fi
cat "$REPORT"
[ ${#FAILED[@]} -eq 0 ]
