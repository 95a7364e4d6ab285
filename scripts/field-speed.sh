#!/bin/bash
# The field's speed targets, the old field and the current one side by side in one run:
#   scripts/field-speed.sh MEDINR [DATA_DIR]
# Same binary, two settings files: "old" = the field before the rate-distortion fine-tune
# (rate.bits_per_parameter 3.5, fine_tune.rate_term false), "new" = the defaults. Prints, per
# field:
#   1. Colin27 compress at 0.1 bpv, default effort, whole process (target ≤ 600 s on 2 cores),
#      with the kept file's rate, PSNR and layer;
#   2. full decode of that file and of a field-alone file (transform and lossy residual off,
#      effort 0.2) by `medinr decompress` to .nii, whole process, median of 7 rounds with the
#      four files interleaved, in M voxels/s (≥ 10 M);
#   3. one 512×512 axial slice of the chest CT (compressed at 0.1 bpv, effort 0.2) from a cold
#      process, median of 21 (scripts/slice-latency.py; target ≤ 100 ms), and the same slice of
#      the CT's field alone at 1 bpv (the largest field file: every table decodes on open).
set -euo pipefail
exe=$(realpath "$1")
data=${2:-data}
here=$(dirname "$(realpath "$0")")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo '{"rate":{"bits_per_parameter":3.5},"fine_tune":{"rate_term":false}}' > "$out/old.json"
echo '{}' > "$out/new.json"
echo '{"transform":{"enabled":false},"rate":{"lossy_residual":false}}' > "$out/new_alone.json"
echo '{"transform":{"enabled":false},"rate":{"lossy_residual":false,"bits_per_parameter":3.5},"fine_tune":{"rate_term":false}}' > "$out/old_alone.json"
colin=$data/mri_t1_colin27_1mm.nii.gz
ct=$data/ct_chest_lung2.nii.gz
voxels=$(( 181 * 217 * 181 ))
summary() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
layer = "transform" if r.get("transform") else ("field+residual" if r.get("lossy_residual") else "field")
print("%.4f bpv, %.2f dB, max %.0f, %s" % (r["bits_per_voxel"], r["quality"]["psnr_db"], r["quality"]["max_abs_error"], layer))
PY
}
wall() { # wall seconds of one command (whole process); its stdout goes to $out/stdout
  local t0 t1
  t0=$(date +%s.%N); "$@" > "$out/stdout"; t1=$(date +%s.%N)
  python3 -c "print('%.2f' % ($t1 - $t0))"
}
rate() { python3 -c "print('%.1f' % ($voxels / $1 / 1e6))"; }
echo "binary: $exe ($("$exe" --version)); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "field | measure | value"
for f in old new; do
  t=$(wall "$exe" compress "$colin" -o "$out/colin_$f.minr" --bpv 0.1 --settings "$out/$f.json" --json -q --force)
  echo "$f | Colin27 compress at 0.1 bpv, effort 1 (≤ 600 s) | $t s ($(summary "$out/stdout"))"
  t=$(wall "$exe" compress "$colin" -o "$out/colin_${f}_alone.minr" --bpv 0.1 --effort 0.2 --settings "$out/${f}_alone.json" --json -q --force)
  echo "$f | Colin27 field alone at 0.1 bpv, effort 0.2 | $t s ($(summary "$out/stdout"))"
  t=$(wall "$exe" compress "$ct" -o "$out/ct_$f.minr" --bpv 0.1 --effort 0.2 --settings "$out/$f.json" --json -q --force)
  echo "$f | chest CT compress at 0.1 bpv, effort 0.2 | $t s ($(summary "$out/stdout"))"
done
# The largest field file a user is likely to slice: the CT's field alone at 1 bpv, where
# every table is decoded when the file opens.
t=$(wall "$exe" compress "$ct" -o "$out/ct_new_alone_1bpv.minr" --bpv 1 --effort 0.2 --settings "$out/new_alone.json" --json -q --force)
echo "new | chest CT field alone at 1 bpv, effort 0.2 | $t s ($(summary "$out/stdout"))"
# Full decodes after every file is made, the four files interleaved (order reversed every
# other round) so that a slow minute of a shared machine falls on all of them.
declare -A runs
files=(colin_old colin_new colin_old_alone colin_new_alone)
for round in 1 2 3 4 5 6 7; do
  order=("${files[@]}")
  if (( round % 2 == 0 )); then order=(colin_new_alone colin_old_alone colin_new colin_old); fi
  for file in "${order[@]}"; do
    runs[$file]+="$(wall "$exe" decompress "$out/$file.minr" -o "$out/decoded.nii" -q --force) "
  done
done
for file in "${files[@]}"; do
  t=$(printf '%s\n' ${runs[$file]} | sort -g | sed -n 4p)
  echo "${file#colin_} | full decode of Colin27 $file.minr to .nii, median of 7 (≥ 10 M voxels/s) | $(rate "$t") M voxels/s ($t s; runs ${runs[$file]% })"
done
echo "cold 512×512 axial slice of the chest CT (z = 30), ≤ 100 ms:"
python3 "$here/slice-latency.py" 21 "medinr=$exe" -- \
  @old_0.1bpv "$out/ct_old.minr" --axis z --index 30 EXT=.nii \
  @new_0.1bpv "$out/ct_new.minr" --axis z --index 30 EXT=.nii \
  @new_alone_1bpv "$out/ct_new_alone_1bpv.minr" --axis z --index 30 EXT=.nii
