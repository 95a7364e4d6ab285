#!/usr/bin/env bash
# The one command to run on a GPU machine (which has no Rust): GPU tests, CPU/GPU decode
# identity on the bundled scans, and CPU vs GPU speed — fit samples/s, decode voxels/s, slice
# latency, whole-scan compress time on Colin27, the chest CT and a 256³ volume. Writes
# results/gpu/*.csv; takes well under 10 minutes on an H100.
#
# It uses binaries built elsewhere by scripts/cuda-build.sh, from a folder (default
# target/gpu-bundle): medinr, gpu_check and medinr-tests (the lib test binary, `cuda` feature).
#
# Usage: scripts/gpu-check.sh [BIN_DIR]
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${1:-target/gpu-bundle}
out=results/gpu
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu-check: no GPU here (nvidia-smi not found); run this on a machine with an NVIDIA GPU" >&2
    exit 2
fi
for b in medinr gpu_check medinr-tests; do
    if [ ! -x "$bin/$b" ]; then
        echo "gpu-check: $bin/$b missing; build it with scripts/cuda-build.sh and copy $bin here" >&2
        exit 2
    fi
done
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/device.csv"
status=0

echo "== GPU tests"
if "$bin/medinr-tests" --ignored gpu::cuda 2>&1 | tee "$out/tests.txt"; then
    echo "tests,pass" >"$out/tests.csv"
else
    echo "tests,FAIL" >"$out/tests.csv"
    status=1
fi

echo "== compress (CPU fit; --device cuda is refused until field::op is wired)"
echo "scan,measure,cpu,gpu,unit,note" >"$out/compress.csv"
compress() { # name, input
    local name=$1 input=$2 t0 t1 gpu
    t0=$(date +%s.%N)
    if ! timeout 240 "$bin/medinr" compress "$input" -o "$scratch/$name.minr" --bpv 0.1 --effort 0.1 -q --force; then
        echo "gpu-check: CPU compress of $input failed" >&2
        status=1
        return
    fi
    t1=$(date +%s.%N)
    gpu="n/a"
    if timeout 240 "$bin/medinr" compress "$input" -o "$scratch/$name.gpu.minr" --bpv 0.1 --effort 0.1 -q --force --device cuda 2>"$scratch/gpu.err"; then
        gpu=$(echo "$(date +%s.%N) - $t1" | bc)
    fi
    echo "$name,compress_time,$(echo "$t1 - $t0" | bc),$gpu,s,--bpv 0.1 --effort 0.1" >>"$out/compress.csv"
}
compress colin27 data/mri_t1_colin27_1mm.nii.gz
compress chest_ct data/ct_chest_lung2.nii.gz
cat "$out/compress.csv"

echo "== decode: identity and speed"
echo "scan,measure,cpu,gpu,unit,note" >"$out/decode.csv"
for name in colin27 chest_ct; do
    [ -f "$scratch/$name.minr" ] || continue
    timeout 120 "$bin/gpu_check" decode "$scratch/$name.minr" "$name" >>"$out/decode.csv" || status=1
done
timeout 180 "$bin/gpu_check" synthetic 256,256,256 synthetic_256 >>"$out/decode.csv" || status=1
cat "$out/decode.csv"

echo "== fit throughput"
echo "scan,measure,cpu,gpu,unit,note" >"$out/fit.csv"
timeout 120 "$bin/gpu_check" fit 181,217,181 colin27 >>"$out/fit.csv" || status=1
timeout 120 "$bin/gpu_check" fit 256,256,256 synthetic_256 >>"$out/fit.csv" || status=1
cat "$out/fit.csv"

if [ $status -ne 0 ]; then
    echo "gpu-check: FAILED (see $out/)" >&2
fi
exit $status
