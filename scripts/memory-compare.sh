#!/bin/bash
# Peak resident memory of `medinr compress`, two binaries side by side on the same scans:
#   scripts/memory-compare.sh OLD_MEDINR NEW_MEDINR [DATA_DIR]
# One run per scan, mode and binary, `--effort 0.1`; prints scan | mode | binary | peak KiB |
# wall time | rate, PSNR, max error. Needs GNU time (/usr/bin/time).
set -euo pipefail
old=$1 new=$2 data=${3:-../shared/data}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for scan in fmri_rest_4d_rapidtide ct_chest_lung2; do
  for mode in "--bpv 0.1" "--max-error 16"; do
    for bin in old new; do
      exe=${!bin}
      # shellcheck disable=SC2086
      /usr/bin/time -v "$exe" compress "$data/$scan.nii.gz" -o "$out/out.minr" --force \
        --effort 0.1 $mode --json 2> "$out/time.txt" > "$out/report.json"
      rss=$(grep "Maximum resident" "$out/time.txt" | awk '{print $6}')
      wall=$(grep "Elapsed" "$out/time.txt" | awk '{print $8}')
      q=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('%.4f bpv %.2f dB max %.0f' % (r['bits_per_voxel'], r['quality']['psnr_db'], r['quality']['max_abs_error']))" "$out/report.json")
      echo "$scan | $mode | $bin | $rss KiB | $wall | $q"
    done
  done
done
