#!/usr/bin/env bash
# Issue 14's GPU session: the parts named, in order, in one call on a lent machine
# (bench/gpu_local.py's docstring says which wheels to carry in .whl/):
#
#   BUDGET_S=520 bash bench/gpu_session.sh tests flux-fast sdxl
#
# parts: tests       the GPU tests (tiny pipelines; about 95 s on an H200)
#        flux        --check, then plain, eager, plain-compile, compile (about 330 s)
#        flux-fast   fp8 and tuned (each a cold compile of its own, 2 minutes or more)
#        sdxl        plain, eager, plain-compile, compile
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
        flux-fast) command=(python3 bench/gpu_local.py --models flux --modes fp8,eager,tuned) ;;
        sdxl) command=(python3 bench/gpu_local.py --models sdxl
                       --modes plain,eager,plain-compile,compile) ;;
        *) echo "unknown part: $part" >&2; exit 2 ;;
    esac
    timeout "$(left)" "${command[@]}" 2>&1 | grep --line-buffered -v "DEBUG    torch" \
        | tee "$out/$part.log"
    echo "$part rc=${PIPESTATUS[0]} at ${SECONDS}s" | tee -a "$out/$part.log"
done
