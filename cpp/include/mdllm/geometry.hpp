// Backbone geometry kernels: batch over frames, float32, multi-threaded.
//
// Layout conventions (row-major, no padding):
//   backbone xyz   (F, L, 4, 3)  atoms N, CA, C, O of each residue, nanometres
//   points         (F, N, 3)     any point set, e.g. a backbone reshaped to (F, 4L, 3)
//   rotations      (F, L, 3, 3)  columns are the frame's x, y, z axes in global coordinates
//   translations   (F, L, 3)     the frame origin (the CA atom)
// Undefined values (a dihedral at a chain end) are written as NaN.
// Every function takes raw pointers and explicit sizes; callers allocate and check shapes.
#pragma once

#include <cstdint>

namespace mdllm {

// Number of worker threads used by the batch kernels; 0 means std::thread::hardware_concurrency().
void set_num_threads(int n);
int num_threads();

namespace geometry {

constexpr int kAtomsPerResidue = 4;  // N, CA, C, O
constexpr int kN = 0, kCA = 1, kC = 2, kO = 3;
// Van der Waals radii (nm) of N, CA, C, O that the clash checks use (mdllm.geometry.ideal.VDW_RADII_NM).
constexpr double kVdwRadiusNm[kAtomsPerResidue] = {0.155, 0.170, 0.170, 0.152};

// Per-residue rigid frames by Gram-Schmidt: x along CA->C, y in the N-CA-C plane, z = x cross y.
void rigid_frames(const float* xyz, int64_t n_frames, int64_t n_res, float* rotations,
                  float* translations);

// Local coordinates of points: local = R^T (p - t). points/out are (F, L, P, 3).
void to_local(const float* rotations, const float* translations, const float* points,
              int64_t n_frames, int64_t n_res, int64_t points_per_res, float* out);

// Inverse of to_local: global = R local + t.
void to_global(const float* rotations, const float* translations, const float* local,
               int64_t n_frames, int64_t n_res, int64_t points_per_res, float* out);

// Backbone dihedrals in radians, each (F, L):
//   phi[i]   = C(i-1), N(i), CA(i), C(i)      (NaN at i = 0)
//   psi[i]   = N(i), CA(i), C(i), N(i+1)      (NaN at i = L-1)
//   omega[i] = CA(i), C(i), N(i+1), CA(i+1)   (NaN at i = L-1)
void dihedrals(const float* xyz, int64_t n_frames, int64_t n_res, float* phi, float* psi,
               float* omega);

// Internal coordinates that determine a backbone up to a rigid motion, each (F, L, 4):
//   bonds[i]     = |N-CA|, |CA-C|, |C-N(i+1)|, |C-O|
//   angles[i]    = N-CA-C, CA-C-N(i+1), C-N(i+1)-CA(i+1), CA-C-O
//   torsions[i]  = phi(i), psi(i), omega(i), N-CA-C-O
// Entries involving residue i+1 are NaN for the last residue, phi is NaN for the first.
void internal_coordinates(const float* xyz, int64_t n_frames, int64_t n_res, float* bonds,
                          float* angles, float* torsions);

// NeRF: rebuild N, CA, C, O from internal coordinates (the layout above). The first residue is
// placed with N at the origin, CA on +x and C in the xy plane; NaN entries that are never used
// (chain ends) are ignored.
void nerf(const float* bonds, const float* angles, const float* torsions, int64_t n_frames,
          int64_t n_res, float* xyz);

// RMSD (nm) of every frame of points (F, N, 3) to ref (N, 3) after optimal superposition.
void rmsd_to_reference(const float* points, int64_t n_frames, int64_t n_points, const float* ref,
                       float* rmsd);

// Superpose every frame onto ref in place (Kabsch via quaternions); rmsd (F) may be null.
void superpose(float* points, int64_t n_frames, int64_t n_points, const float* ref, float* rmsd);

// Symmetric matrix (F, F) of RMSD between all pairs of frames.
void pairwise_rmsd(const float* points, int64_t n_frames, int64_t n_points, float* out);

}  // namespace geometry
}  // namespace mdllm
