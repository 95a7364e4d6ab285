#!/usr/bin/env python3
"""Independent reference geometry for medinr's DICOM reader (tests/dicom.rs).

From pydicom alone (no medinr code, no dicom2nifti): for each sample in data/dicom, sort the
images by Image Position (Patient) projected on the slice normal, and build the NIfTI (RAS)
affine: columns row cosine * column spacing, column cosine * row spacing, normal * mean slice
step, origin = first slice's position, then x and y negated (DICOM is LPS). Prints the
shape, datatype, pixdim, scaling and affine of each, and the Rust constants for
tests/dicom.rs.

With `--medinr PATH` it also runs the real CLI (compress at 1 bpv, effort 0.02 -> decompress)
and reads medinr's output NIfTI with nibabel, printing the largest absolute affine
difference per sample.

    python3 -m venv /tmp/pyenv && /tmp/pyenv/bin/pip install pydicom nibabel numpy
    /tmp/pyenv/bin/python tests/dicom_reference.py [--medinr target/release/medinr]
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import pydicom

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "dicom")

SAMPLES = ["mr_series", "CT_small.dcm", "eCT_Supplemental.dcm", "emri_small.dcm"]


def frames_of(ds):
    """(position, orientation, pixel spacing) per frame; None where absent."""
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else None
    per = ds.get("PerFrameFunctionalGroupsSequence")

    def pick(i, seq, attr):
        for group in ([per[i]] if per else []) + ([shared] if shared else []):
            if seq in group and attr in group[seq][0]:
                return [float(v) for v in group[seq][0][attr].value]
        if attr in ds:
            return [float(v) for v in ds[attr].value]
        return None

    return [
        (
            pick(i, "PlanePositionSequence", "ImagePositionPatient"),
            pick(i, "PlaneOrientationSequence", "ImageOrientationPatient"),
            pick(i, "PixelMeasuresSequence", "PixelSpacing"),
        )
        for i in range(n)
    ]


def reference(path):
    files = sorted(os.path.join(path, f) for f in os.listdir(path)) if os.path.isdir(path) else [path]
    dss = [pydicom.dcmread(f) for f in files]
    ds0 = dss[0]
    frames = [fr for ds in dss for fr in frames_of(ds)]
    rows, cols = int(ds0.Rows), int(ds0.Columns)
    signed = int(ds0.PixelRepresentation) == 1
    dtype = {8: "u8", 16: "u16", 32: "u32"}[int(ds0.BitsAllocated)]
    if signed:
        dtype = "i" + dtype[1:]
    slope = float(getattr(ds0, "RescaleSlope", 0) or 0)
    inter = float(getattr(ds0, "RescaleIntercept", 0) or 0)
    if "RescaleSlope" not in ds0 and "SharedFunctionalGroupsSequence" in ds0:
        pvt = ds0.SharedFunctionalGroupsSequence[0].get("PixelValueTransformationSequence")
        if pvt:
            slope, inter = float(pvt[0].RescaleSlope), float(pvt[0].RescaleIntercept)
    spacing = frames[0][2] or [1.0, 1.0]
    if frames[0][0] is None:
        dz = float(getattr(ds0, "SpacingBetweenSlices", 0) or getattr(ds0, "SliceThickness", 0) or 1)
        return dict(shape=(cols, rows, len(frames), 1), dtype=dtype, affine=None,
                    pixdim=(spacing[1], spacing[0], dz), slope=slope, inter=inter)
    ori = np.array(frames[0][1])
    row, col = ori[:3], ori[3:]
    normal = np.cross(row, col)
    pos = np.array([f[0] for f in frames])
    order = np.argsort(pos @ normal, kind="stable")
    pos = pos[order]
    proj = pos @ normal
    nz = len(np.unique(np.round(proj, 3)))
    nt = len(frames) // nz
    firsts = pos[::nt]
    if nz > 1:
        dz = (firsts[-1] @ normal - firsts[0] @ normal) / (nz - 1)
    else:
        dz = float(getattr(ds0, "SpacingBetweenSlices", 0) or getattr(ds0, "SliceThickness", 0) or 1)
    lps = np.eye(4)
    lps[:3, 0] = row * spacing[1]
    lps[:3, 1] = col * spacing[0]
    lps[:3, 2] = normal * dz
    lps[:3, 3] = firsts[0]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return dict(shape=(cols, rows, nz, nt), dtype=dtype, affine=ras[:3],
                pixdim=(spacing[1], spacing[0], dz), slope=slope, inter=inter)


def rust_const(name, ref):
    rows = ",\n".join(
        "        [" + ", ".join(f"{v:.9f}" for v in r) + "]" for r in ref["affine"]
    )
    return f"const {name}: [[f64; 4]; 3] = [\n{rows},\n];"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--medinr", help="medinr binary: also compare its compress/decompress output")
    args = ap.parse_args()
    print(f"pydicom {pydicom.__version__}, numpy {np.__version__}")
    worst = 0.0
    for name in SAMPLES:
        ref = reference(os.path.join(DATA, name))
        print(f"\n{name}: shape {ref['shape']} {ref['dtype']} pixdim "
              f"{tuple(round(p, 6) for p in ref['pixdim'])} scl {ref['slope']}/{ref['inter']}")
        if ref["affine"] is not None:
            print(rust_const(name.split(".")[0].upper(), ref))
        if args.medinr:
            import nibabel as nib
            with tempfile.TemporaryDirectory() as tmp:
                minr, nii = os.path.join(tmp, "a.minr"), os.path.join(tmp, "a.nii")
                subprocess.run([args.medinr, "compress", os.path.join(DATA, name), "-o", minr,
                                "--bpv", "1", "--effort", "0.02", "--quiet"], check=True,
                               stdout=subprocess.DEVNULL)
                subprocess.run([args.medinr, "decompress", minr, "-o", nii, "--quiet"], check=True,
                               stdout=subprocess.DEVNULL)
                img = nib.load(nii)
                h = img.header
                shape = tuple(img.shape) + (1,) * (4 - len(img.shape))
                assert shape == ref["shape"], (shape, ref["shape"])
                zooms = h.get_zooms()[:3]
                dpix = max(abs(a - b) for a, b in zip(zooms, ref["pixdim"]))
                if ref["affine"] is not None:
                    assert int(h["sform_code"]) == 1 and int(h["qform_code"]) == 1
                    ds = np.abs(h.get_sform()[:3] - ref["affine"]).max()
                    dq = np.abs(h.get_qform()[:3] - ref["affine"]).max()
                    worst = max(worst, ds, dq)
                    print(f"  medinr vs pydicom: max |sform diff| {ds:.2e}, max |qform diff| {dq:.2e}, "
                          f"max |pixdim diff| {dpix:.2e}")
                else:
                    print(f"  medinr vs pydicom: no geometry (codes {int(h['sform_code'])}/"
                          f"{int(h['qform_code'])}), max |pixdim diff| {dpix:.2e}")
                worst = max(worst, dpix)
    if args.medinr:
        print(f"\nworst difference {worst:.2e}")
        if worst > 1e-4:
            sys.exit(1)


if __name__ == "__main__":
    main()
