#!/usr/bin/env bash
# The one command to run on a GPU machine (which has no Rust): GPU tests, CPU/GPU decode
# identity on the bundled scans, and CPU vs GPU speed — whole-scan compress (fit) time and
# quality on Colin27 and the chest CT, a lossless GPU fit checked voxel for voxel, decode
# voxels/s and slice latency (also on a 256³ volume), fit samples/s. Writes results/gpu/*.csv;
# stops any step still running after 9.5 minutes in all.
#
# It uses binaries built elsewhere by scripts/cuda-build.sh, from a folder (default
# target/gpu-bundle): medinr, gpu_check and medinr-tests (the lib test binary, `cuda` feature).
# They need the driver's libcuda.so.1 and CUDA 13 toolkit libraries (cuBLAS, cuRAND, cudart):
# where the loader does not find the latter, they are looked for in /usr/local/cuda and in the
# nvidia wheels of python3's environment.
#
# Usage: scripts/gpu-check.sh [BIN_DIR]
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${1:-target/gpu-bundle}
out=results/gpu
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
begin=$(date +%s)
deadline=$((begin + 570)) # the whole check stays under 10 minutes, whatever hangs

# budget SECONDS CMD...: runs CMD with a timeout of SECONDS, cut to what is left of the deadline.
budget() {
    local left=$((deadline - $(date +%s))) limit=$1
    shift
    if [ "$left" -le 0 ]; then
        echo "gpu-check: out of time, skipping: $*" >&2
        return 124
    fi
    timeout "$((left < limit ? left : limit))" "$@"
}

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

# Shared libraries the loader cannot find for the bundle's binaries.
missing() { ldd "$bin/medinr" "$bin/gpu_check" "$bin/medinr-tests" | awk '/not found/ {print $1}' | sort -u; }
if [ -n "$(missing)" ]; then
    wheels=$(python3 -c 'import glob, nvidia
print(" ".join(d for p in nvidia.__path__ for d in glob.glob(p + "/*/lib")))' 2>/dev/null)
    for d in ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 \
        /usr/local/cuda/targets/x86_64-linux/lib $wheels; do
        [ -d "$d" ] && extra="${extra:+$extra:}$d"
    done
    export LD_LIBRARY_PATH="${extra:-}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "gpu-check: LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
fi
if [ -n "$(missing)" ]; then
    echo "gpu-check: shared libraries not found: $(missing | tr '\n' ' ')" >&2
    echo "gpu-check: install the CUDA 13 toolkit libraries (or the nvidia-cublas, nvidia-curand and" \
        "nvidia-cuda-runtime wheels) or put their folder on LD_LIBRARY_PATH" >&2
    exit 2
fi

mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/device.csv"
status=0

echo "== GPU tests (the #[ignore]d ones in src/gpu/cuda/tests.rs)"
if budget 300 "$bin/medinr-tests" --ignored gpu::cuda 2>&1 | tee "$out/tests.txt"; then
    echo "tests,pass" >"$out/tests.csv"
else
    echo "tests,FAIL" >"$out/tests.csv"
    status=1
fi

# One field of a compress --json report, or "n/a".
field() { python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    r = r[k]
print(r)' "$@" 2>/dev/null || echo n/a; }

echo "== compress: CPU fit vs GPU fit (--device cuda), each file decoded by the CPU decoder"
echo "scan,measure,cpu,gpu,unit,note" >"$out/compress.csv"
compress() { # name, input, extra flags...
    local name=$1 input=$2 dev
    shift 2
    for dev in cpu cuda; do
        if ! budget 240 "$bin/medinr" compress "$input" -o "$scratch/$name.$dev.minr" "$@" \
            --device "$dev" --json --force >"$scratch/$name.$dev.json" 2>"$scratch/$name.$dev.err"; then
            echo "gpu-check: $dev compress of $input failed:" >&2
            cat "$scratch/$name.$dev.err" >&2
            cp "$scratch/$name.$dev.err" "$out/$name.$dev.err"
            status=1
        fi
    done
    local c=$scratch/$name.cpu.json g=$scratch/$name.cuda.json note="$*"
    for m in total_seconds:s fit_seconds:s steps:count quality.psnr_db:dB quality.max_abs_error:physical bits_per_voxel:bpv; do
        echo "$name,${m%%:*},$(field "$c" "${m%%:*}"),$(field "$g" "${m%%:*}"),${m##*:},$note" >>"$out/compress.csv"
    done
}
compress colin27 data/mri_t1_colin27_1mm.nii.gz --bpv 0.1 --effort 0.1
compress chest_ct data/ct_chest_lung2.nii.gz --bpv 0.1 --effort 0.1
cat "$out/compress.csv"

echo "== lossless GPU fit: decoded by the CPU, compared voxel for voxel"
echo "scan,measure,value,unit,note" >"$out/lossless.csv"
ct=data/ct_chest_lung2.nii.gz
if budget 240 "$bin/medinr" compress "$ct" -o "$scratch/lossless.minr" --lossless --effort 0.1 \
    --device cuda -q --force &&
    budget 120 "$bin/medinr" decompress "$scratch/lossless.minr" -o "$scratch/lossless.nii.gz" -q --force &&
    budget 120 "$bin/medinr" compare "$ct" "$scratch/lossless.nii.gz" --json >"$scratch/lossless.json"; then
    err=$(field "$scratch/lossless.json" max_abs_error)
    echo "chest_ct,max_abs_error,$err,physical,--lossless --effort 0.1 --device cuda" >>"$out/lossless.csv"
    echo "chest_ct,bytes,$(stat -c %s "$scratch/lossless.minr"),B,--lossless --effort 0.1 --device cuda" >>"$out/lossless.csv"
    if [ "$err" != "0" ] && [ "$err" != "0.0" ]; then
        echo "gpu-check: lossless GPU fit decodes with max abs error $err (expected 0)" >&2
        status=1
    fi
else
    echo "gpu-check: lossless GPU compress/decompress/compare of $ct failed" >&2
    status=1
fi
cat "$out/lossless.csv"

echo "== decode: identity and speed (files fitted on the CPU above)"
echo "scan,measure,cpu,gpu,unit,note" >"$out/decode.csv"
for name in colin27 chest_ct; do
    [ -f "$scratch/$name.cpu.minr" ] || continue
    budget 120 "$bin/gpu_check" decode "$scratch/$name.cpu.minr" "$name" >>"$out/decode.csv" || status=1
done
budget 180 "$bin/gpu_check" synthetic 256,256,256 synthetic_256 >>"$out/decode.csv" || status=1
cat "$out/decode.csv"

echo "== fit throughput"
echo "scan,measure,cpu,gpu,unit,note" >"$out/fit.csv"
budget 120 "$bin/gpu_check" fit 181,217,181 colin27 >>"$out/fit.csv" || status=1
budget 120 "$bin/gpu_check" fit 256,256,256 synthetic_256 >>"$out/fit.csv" || status=1
cat "$out/fit.csv"

echo "gpu-check: $(($(date +%s) - begin)) s in all"
if [ $status -ne 0 ]; then
    echo "gpu-check: FAILED (see $out/)" >&2
fi
exit $status
