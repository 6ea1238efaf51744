"""Ideal backbone geometry as named constants: what validity checks judge against, refinement pulls
towards and reconstruction builds with."""

from __future__ import annotations

# Engh & Huber (1991), Acta Cryst. A47:392, backbone of non-glycine, non-proline residues.
# Order as mdllm.geometry.internal_coordinates: N-CA, CA-C, C-N(i+1), C=O (nm) and
# N-CA-C, CA-C-N(i+1), C-N(i+1)-CA(i+1), CA-C=O (degrees).
IDEAL_BONDS_NM = (0.1458, 0.1525, 0.1329, 0.1231)
BOND_SIGMA_NM = (0.0019, 0.0021, 0.0014, 0.0020)
IDEAL_ANGLES_DEG = (111.2, 116.2, 121.7, 120.8)
ANGLE_SIGMA_DEG = (2.8, 2.0, 1.8, 1.7)
# Van der Waals radii (Bondi 1964) of the backbone heavy atoms N, CA, C, O, in nm.
VDW_RADII_NM = (0.155, 0.170, 0.170, 0.152)
