#!/bin/sh
# Runs every target for SECS seconds (default 120), one at a time, seeded from seeds/.
# Usage: fuzz/run-all.sh [SECS]   (from anywhere; logs in fuzz/logs/)
set -u
cd "$(dirname "$0")"
SECS=${1:-120}
mkdir -p logs
for t in container_raw:minr container_framed:minr decoder_framed:minr entropy:entropy residual:residual nifti:nifti dicom:dicom; do
  name=${t%%:*}; seeds=seeds/${t#*:}
  mkdir -p corpus/$name
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O $name corpus/$name $seeds -- \
    -max_total_time=$SECS -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
    > logs/$name.log 2>&1
  echo "$name: exit $? $(grep -E 'stat::number_of_executed_units|stat::slowest|ERROR|SUMMARY' logs/$name.log | tr '\n' ' ')"
done
