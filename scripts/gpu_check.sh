#!/usr/bin/env bash
# The prepared GPU check (issue 3's GPU section), for a task lent one H100/H200: for each
# Llama-shaped random model in bf16, a full-model HardwareProfile, then AR, EESD and PPSD at
# oracle α 0.6 and 0.9 (PPSD on the sequential backend: one GPU; every output checked against
# AR token for token), each scheme's RunRecord and the printed table kept. The device's
# nvidia-smi goes beside them. Everything lands under $OUT (the device tool's folder) or
# results/gpu/. Budget: stops starting new models after BUDGET_S seconds (default 300).
#
# On the device machine: python3 there holds CUDA torch and transformers; simpy, pyyaml and
# tqdm must be importable (carry wheels as the device tool's README says if they are not):
#   bash scripts/gpu_check.sh
# CPU dry run (what tests/test_gpu_check_script.py runs in CI):
#   DEVICE=cpu PRESETS=tiny TOKENS=16 REPEATS=1 PROFILE_REPEATS=5 OUT=/tmp/x bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
PRESETS=${PRESETS:-llama-3.2-1b llama-2-7b}
ALPHAS=${ALPHAS:-0.6 0.9}
TOKENS=${TOKENS:-64}
REPEATS=${REPEATS:-3}
PROFILE_REPEATS=${PROFILE_REPEATS:-20}
BUDGET_S=${BUDGET_S:-300}
PY=${PYTHON:-python3}
DEST=${OUT:-results/gpu}/gpu_check
mkdir -p "$DEST"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
ppsd() { "$PY" -m ppsd_sim.cli.main "$@"; }

{ nvidia-smi 2>&1 || echo "nvidia-smi not available (device: $DEVICE)"; } >"$DEST/device.txt"
"$PY" -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())' >>"$DEST/device.txt"
start=$SECONDS
for preset in $PRESETS; do
  if ((SECONDS - start > BUDGET_S)); then
    echo "gpu_check: budget of ${BUDGET_S}s spent; skipped $preset" | tee -a "$DEST/skipped.txt"
    continue
  fi
  ppsd profile --preset "$preset" --device "$DEVICE" --no-stages \
    --repeats "$PROFILE_REPEATS" --output "$DEST/$preset/profile.json"
  for alpha in $ALPHAS; do
    out="$DEST/$preset/alpha$alpha"
    ppsd run --preset "$preset" --device "$DEVICE" --backend sequential --scheme all \
      --alpha "$alpha" --tokens "$TOKENS" --repeats "$REPEATS" --records "$out" | tee "$out.txt"
  done
  echo "gpu_check: $preset done at $((SECONDS - start)) s" | tee -a "$DEST/timeline.txt"
done
echo "gpu_check: results in $DEST"
