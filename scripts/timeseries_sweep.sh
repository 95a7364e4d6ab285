#!/bin/bash
# One measurement of results/timeseries/: compress (timed), decompress, compare (JSON).
# usage: scripts/timeseries_sweep.sh OUTDIR NAME INPUT [compress args...]
# e.g.   scripts/timeseries_sweep.sh /tmp/ts rest_d16 ../shared/data/fmri_rest_4d_rapidtide.nii.gz --max-error 16
# Every run uses --effort 0.3 (for time; EFFORT=E overrides); then scripts/timeseries_table.py OUTDIR NAME... prints the rows.
set -euo pipefail
out=$1; name=$2; in=$3; shift 3
bin=${MEDINR:-target/release/medinr}
/usr/bin/time -f "%e s wall, %M KB" "$bin" compress "$in" -o "$out/$name.minr" --effort "${EFFORT:-0.3}" --json --force "$@" \
    > "$out/$name.json" 2> "$out/$name.err"
"$bin" decompress "$out/$name.minr" -o "$out/$name.nii.gz" --force -q
"$bin" compare "$in" "$out/$name.nii.gz" --json > "$out/$name.cmp.json"
