#!/usr/bin/env python3
"""Convert one of pyradiomics' sample NRRD scans to NIfTI, values unchanged.

    scripts/nrrd_to_nifti.py IN.nrrd OUT.nii.gz      (needs: pip install pynrrd nibabel numpy)

How the scans the study reads by path but does not bundle were made: `pip download --no-deps
--no-binary=:all: pyradiomics==3.1.0`, unpack, then data/lung1_image.nrrd ->
ct_chest_lung1.nii.gz (chest CT, Hounsfield units) and data/brain1_image.nrrd ->
mr_brain1.nii.gz (brain MRI); BSD-3-Clause. NRRD's LPS world axes become NIfTI's RAS affine
(x and y rows negated), written as both qform and sform; voxel values are stored as int16, as
in the NRRD.
"""
import sys

import nibabel as nib
import nrrd
import numpy as np

src, dst = sys.argv[1], sys.argv[2]
data, header = nrrd.read(src)
if header.get('space') != 'left-posterior-superior':
    sys.exit(f"{src}: expected an LPS NRRD, found space {header.get('space')!r}")
if data.dtype != np.int16 and (data.min() < -32768 or data.max() > 32767 or np.any(data != np.round(data))):
    sys.exit(f"{src}: values do not fit int16 unchanged ({data.dtype})")
affine = np.eye(4)
affine[:3, :3] = np.array(header['space directions']).T
affine[:3, 3] = header['space origin']
affine[0, :] *= -1  # LPS -> RAS
affine[1, :] *= -1
image = nib.Nifti1Image(data.astype(np.int16), affine)
image.header.set_data_dtype(np.int16)
image.header.set_xyzt_units('mm')
image.header.set_qform(affine, code=1)
image.header.set_sform(affine, code=1)
nib.save(image, dst)
print(dst, data.shape, data.dtype, data.min(), data.max())
