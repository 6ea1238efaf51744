// Per-frame physical validity checks of backbones: bond geometry against ideal values and
// steric clashes. Layout as in geometry.hpp: xyz (F, L, 4, 3) float32 nanometres, atoms N, CA, C, O.
// Every function takes raw pointers and explicit sizes; callers allocate outputs and check shapes.
#pragma once

#include <cstdint>

namespace mdllm::validity {

// Ideal values and standard deviations of the four backbone bonds (nm) and angles (radians), in
// the column order of geometry::internal_coordinates:
//   bonds  N-CA, CA-C, C-N(i+1), C-O;   angles N-CA-C, CA-C-N(i+1), C-N(i+1)-CA(i+1), CA-C-O.
struct IdealGeometry {
  float bond[4];
  float bond_sigma[4];
  float angle[4];
  float angle_sigma[4];
};

// Per-frame summary of bond geometry. A bond or angle is an outlier when |value - ideal| exceeds
// max_z standard deviations; a chain break is a C(i)-N(i+1) distance above break_nm. Terms that
// span residues i and i+1 are skipped where chain_end[i] is non-zero (the last residue of a chain).
// Outputs, each of length F:
//   n_bond_outliers, n_angle_outliers, n_breaks   counts
//   worst_bond_z, worst_angle_z                   largest |z| (0 when there is nothing to check)
//   worst_bond_res, worst_angle_res               residue index of that largest |z| (-1 if none)
// Non-finite coordinates give NaN distances that count as neither outlier nor break; callers flag
// such frames separately.
void check_bonds(const float* xyz, int64_t n_frames, int64_t n_res, const uint8_t* chain_end,
                 const IdealGeometry& ideal, float max_z, float break_nm, int32_t* n_bond_outliers,
                 int32_t* n_angle_outliers, int32_t* n_breaks, float* worst_bond_z,
                 float* worst_angle_z, int32_t* worst_bond_res, int32_t* worst_angle_res);

// Steric clashes per frame between backbone heavy atoms of residues i < j that are not close in
// sequence (j - i >= min_separation within one chain; any pair across chains, by chain_index).
// An atom pair clashes when its distance is below radius[a] + radius[b] - overlap_nm (radius per
// backbone atom N, CA, C, O in nm); a CA pair clashes when closer than ca_min_nm.
// Outputs, each of length F: n_clashes (atom pairs), n_ca_clashes, worst_overlap (nm, the largest
// positive radius sum minus distance, 0 if no atoms overlap), worst_pair (F, 2) the residues of
// that pair (-1 if no atoms overlap).
// Residue pairs whose CAs are further apart than any overlap could reach are skipped.
void find_clashes(const float* xyz, int64_t n_frames, int64_t n_res, const int32_t* chain_index,
                  const float* radius, float overlap_nm, float ca_min_nm, int32_t min_separation,
                  int32_t* n_clashes, int32_t* n_ca_clashes, float* worst_overlap,
                  int32_t* worst_pair);

}  // namespace mdllm::validity
