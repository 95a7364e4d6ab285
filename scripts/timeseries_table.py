#!/usr/bin/env python3
"""Markdown table rows from `medinr compress --json` and `medinr compare --json` outputs.

usage: timeseries_table.py DIR NAME...   (reads DIR/NAME.json, DIR/NAME.cmp.json, DIR/NAME.err)
Used by scripts/timeseries_sweep.sh; results/timeseries/*.md hold its output.
"""
import json
import sys


def fmt(x, nd=4):
    if x is None:
        return "—"
    if isinstance(x, float) and x == float("inf"):
        return "∞"
    return f"{x:.{nd}f}"


def main():
    d = sys.argv[1]
    print("| run | mode | bpv | residual uses field | PSNR dB | temporal-mean PSNR dB | max abs err "
          "| median ts corr | median tSNR ratio | FC corr | min frame PSNR dB | compress s (wall) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in sys.argv[2:]:
        c = json.load(open(f"{d}/{name}.json"))
        m = json.load(open(f"{d}/{name}.cmp.json"))
        t = m["timeseries"]
        wall = open(f"{d}/{name}.err").read().strip().splitlines()[-1].split()[0]
        mode = "bounded" if c.get("residual_bytes") else "lossy"
        frames = t["per_frame_psnr_db"]
        minf = min(x if x is not None else float("inf") for x in frames)
        psnr = t["psnr_db"] if t["psnr_db"] is not None else float("inf")
        print(f"| {name} | {mode} | {c['bits_per_voxel']:.4f} | {c.get('residual_uses_field', '—')} "
              f"| {fmt(psnr, 2)} | {fmt(t['temporal_mean_psnr_db'], 2)} | {t['max_abs_error']:g} "
              f"| {fmt(t['median_ts_correlation'])} | {fmt(t['median_tsnr_ratio'])} "
              f"| {fmt(t['fc_correlation'])} | {fmt(minf, 2)} | {float(wall):.0f} |")


main()
