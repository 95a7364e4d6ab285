#!/usr/bin/env python3
"""Writes a box mask as a minimal NIfTI-1 (u8, unit spacing; medinr checks a mask by shape only).

Usage: box_mask.py OUT.nii NX NY NZ NT X0:X1 Y0:Y1 Z0:Z1   (ends exclusive; NT = 1 for a 3D mask)
Used for results/residual/roi.md. Standard library only.
"""
import struct, sys
out, nx, ny, nz, nt = sys.argv[1], *map(int, sys.argv[2:6])
box = [tuple(map(int, a.split(':'))) for a in sys.argv[6:9]]
h = bytearray(352)
struct.pack_into('<i', h, 0, 348)
dims = [4 if nt > 1 else 3, nx, ny, nz, nt, 1, 1, 1]
struct.pack_into('<8h', h, 40, *dims)
struct.pack_into('<h', h, 70, 2)   # datatype u8
struct.pack_into('<h', h, 72, 8)   # bitpix
struct.pack_into('<8f', h, 76, 1, 1, 1, 1, 1, 1, 1, 1)
struct.pack_into('<f', h, 108, 352.0)
struct.pack_into('<f', h, 112, 1.0)  # scl_slope
h[344:348] = b'n+1\0'
data = bytearray(nx * ny * nz * nt)
n = 0
for t in range(nt):
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if box[0][0] <= x < box[0][1] and box[1][0] <= y < box[1][1] and box[2][0] <= z < box[2][1]:
                    data[((t * nz + z) * ny + y) * nx + x] = 1
                    n += 1
open(out, 'wb').write(bytes(h) + bytes(data))
print(n, 'inside of', len(data), f'({100*n/len(data):.2f} %)')
