#!/usr/bin/env python3
"""Cold-start latency of `medinr slice`: a fresh process per request, binaries interleaved.

    scripts/slice-latency.py RUNS LABEL=MEDINR [LABEL=MEDINR ...] -- @NAME FILE.minr ARGS... EXT=.nii ...

Each `@NAME` starts a request: the slice arguments after it (`EXT=` names the output
extension). Every request runs RUNS + 1 times per binary, alternating the binaries' order;
the first round only warms the page cache. Prints the median and minimum wall time per
request and binary, and the load average. Outputs go to a temporary folder.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
runs = int(sys.argv[1])
bins = []
i = 2
while sys.argv[i] != '--':
    label, path = sys.argv[i].split('=', 1); bins.append((label, path)); i += 1
reqs = []
cur = None
for a in sys.argv[i+1:]:
    if a.startswith('@'):
        cur = [a[1:], []]; reqs.append(cur)
    else:
        cur[1].append(a)
times = {(l, r[0]): [] for l, _ in bins for r in reqs}
tmp = tempfile.mkdtemp(prefix="medinr-latency-")
for k in range(runs + 1):
    for name, args in reqs:
        for label, path in (bins if k % 2 == 0 else bins[::-1]):
            out = os.path.join(tmp, f"out_{label}_{name}")
            ext = [a for a in args if a.startswith('EXT=')][0][4:]
            cmd = [path, 'slice', '-q', '--force', '-o', out + ext] + [a for a in args if not a.startswith('EXT=')]
            t = time.perf_counter()
            p = subprocess.run(cmd)
            dt = (time.perf_counter() - t) * 1000
            if p.returncode != 0: print('FAIL', cmd); sys.exit(1)
            if k > 0: times[(label, name)].append(dt)  # first round warms the page cache
print(f"load: {os.getloadavg()}")
for name, _ in reqs:
    print(name.ljust(14), '  '.join(f"{l}: median {statistics.median(times[(l,name)]):6.1f} ms (min {min(times[(l,name)]):6.1f})" for l, _ in bins))
