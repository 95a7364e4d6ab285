#!/usr/bin/env bash
# Builds medinr's CUDA kernels — and, unless MEDINR_PTX_ONLY=1, the `cuda` binary — on a
# machine without a GPU or a CUDA installation: nvcc and the CUDA headers come from PyPI
# wheels in a private virtual environment (.cuda-venv, git-ignored).
#
# Step 1 compiles every kernels/*.cu to PTX for sm_90 and sm_80 with the flags build.rs uses,
# assembles each PTX with ptxas (so register or syntax problems show up here, not on the GPU
# machine) and prints the wall time. Step 2 runs `cargo build --release --features cuda`.
#
# Usage: scripts/cuda-build.sh            (from anywhere; works in the repository root)
# Env:   MEDINR_CUDA_VENV  where the venv lives (default: <repo>/.cuda-venv)
#        MEDINR_PTX_ONLY=1 stop after step 1
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=${MEDINR_CUDA_VENV:-$root/.cuda-venv}
# The toolkit release the PTX is built with; the driver on the GPU machine must be at least
# this new to load it (CUDA 13.0 needs driver >= 580).
cuda=13.0.88
cccl=13.0.85

if [ ! -x "$venv/bin/pip" ]; then
    python3 -m venv "$venv"
fi
# nvcc (+ ptxas, cicc via nvvm), the runtime and crt headers nvcc includes, CCCL.
"$venv/bin/pip" install -q "nvidia-cuda-nvcc==$cuda" "nvidia-nvvm==$cuda" \
    "nvidia-cuda-crt==$cuda" "nvidia-cuda-runtime==$cuda" "nvidia-cuda-cccl==$cccl"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export CUDA_ROOT="$site/nvidia/cu13"
export CUDA_PATH="$CUDA_ROOT" CUDA_HOME="$CUDA_ROOT"
export PATH="$CUDA_ROOT/bin:$PATH"
# candle-kernels builds its own kernels for this compute capability (H100/H200).
export CUDA_COMPUTE_CAP=90
nvcc --version | tail -n 2

echo "== step 1: PTX for kernels/*.cu"
out=target/ptx
mkdir -p "$out"
start=$(date +%s.%N)
for src in kernels/*.cu; do
    name=$(basename "$src" .cu)
    for arch in sm_90 sm_80; do
        nvcc -ptx -O3 -std=c++14 -fmad=false -arch="$arch" -o "$out/${name}_${arch}.ptx" "$src"
        ptxas -arch="$arch" -o /dev/null "$out/${name}_${arch}.ptx"
    done
done
end=$(date +%s.%N)
ls -l "$out"
printf 'PTX for %s kernel files x 2 architectures (nvcc + ptxas): %.1f s\n' \
    "$(ls kernels/*.cu | wc -l)" "$(echo "$end - $start" | bc)"

if [ "${MEDINR_PTX_ONLY:-0}" = 1 ]; then
    exit 0
fi

echo "== step 2: cargo build --release --features cuda"
start=$(date +%s.%N)
cargo build --release --features cuda
end=$(date +%s.%N)
printf 'cargo build --release --features cuda: %.1f s\n' "$(echo "$end - $start" | bc)"

echo "== step 3: bundle for scripts/gpu-check.sh (target/gpu-bundle)"
tests=$(cargo test --release --features cuda --lib --no-run --message-format=json |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])')
mkdir -p target/gpu-bundle
cp target/release/medinr target/release/gpu_check target/gpu-bundle/
cp "$tests" target/gpu-bundle/medinr-tests
ls -l target/gpu-bundle
