#!/usr/bin/env bash
# Issue 14's GPU session: the parts named, in order, in one call on a lent machine
# (bench/gpu_local.py's docstring says which wheels to carry in .whl/):
#
#   BUDGET_S=540 bash bench/gpu_session.sh tests sdxl-eager sdxl-compile
#
# parts: tests         the GPU tests (tiny pipelines; 101 s on an H200, before the
#                      max-autotune test was added)
#        flux          --check, then plain, eager, plain-compile, compile (about 330 s)
#        flux-fp8      eager, then fp8 with its PSNR against eager (about 210 s)
#        flux-tuned    compile = "max-autotune" with fuse_qkv and channels_last
#        sdxl-eager    plain, plain-thread, eager, 8 rounds (about 100 s)
#        sdxl-compile  plain-compile, compile
#
# Done on an H200 (docs/performance.md): flux, tests, flux-fp8, and sdxl's eager
# rows (5 rounds: the backend +23 % on the medians, +10 % on the mins, where
# FLUX's eager overhead was +2.8 %). What is left, in a session's 15 minutes: the
# line above (timeout_s 580; sdxl-eager runs plain-thread beside plain and eager,
# to tell a cost of the worker thread from one of the backend's code), then at
# once, on the still warm machine, `BUDGET_S=<what is left, less 20> ... flux-tuned`.
# max-autotune's cold compile of FLUX had tuned about 5 matmul shapes after 150 s:
# it may need a call of its own. The machine goes back after 30 s idle and a fresh
# one costs its start: send the second call at once.
#
# The parts share BUDGET_S seconds; each runs under what is left, so a slow one
# cuts only itself and those after it short. Every log goes to $OUT as it is
# written, so a call stopped at its limit still returns what it measured.
set -u
[ $# -gt 0 ] || { echo "usage: gpu_session.sh PART..." >&2; exit 2; }
deadline=$((SECONDS + ${BUDGET_S:-520}))
out=${OUT:-/tmp/nebula-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 DIFFUSERS_VERBOSITY=error TRANSFORMERS_VERBOSITY=error

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD

left() { local s=$((deadline - SECONDS)); echo $((s > 30 ? s : 30)); }

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import sys, torch, diffusers, transformers, accelerate, torchao
print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'diffusers', diffusers.__version__, 'transformers', transformers.__version__,
      'accelerate', accelerate.__version__, 'torchao', torchao.__version__)"
    nproc
} 2>&1 | tee "$out/env.txt"

for part in "$@"; do
    case $part in
        tests) command=(python3 -m pytest -p no:cacheprovider -q -rfE -m gpu -W default
                        --timeout 90 tests/backends/test_diffusers_gpu.py) ;;
        flux) command=(python3 bench/gpu_local.py --check --models flux
                       --modes plain,eager,plain-compile,compile) ;;
        flux-fp8) command=(python3 bench/gpu_local.py --models flux --modes eager,fp8) ;;
        flux-tuned) command=(python3 bench/gpu_local.py --models flux --modes tuned) ;;
        sdxl-eager) command=(python3 bench/gpu_local.py --models sdxl --rounds 8
                             --modes plain,plain-thread,eager) ;;
        sdxl-compile) command=(python3 bench/gpu_local.py --models sdxl
                               --modes plain-compile,compile) ;;
        *) echo "unknown part: $part" >&2; exit 2 ;;
    esac
    timeout "$(left)" "${command[@]}" 2>&1 | grep --line-buffered -v "DEBUG    torch" \
        | tee "$out/$part.log"
    echo "$part rc=${PIPESTATUS[0]} at ${SECONDS}s" | tee -a "$out/$part.log"
done
