// Projection of decoded motion-token backbones onto the key frame's local geometry, computed like
// the numpy reference python/mdllm/geometry/projection.py. Motion tokens place every residue on its
// own, so bonds between neighbouring residues carry the quantisation error of two codes; this step
// restores the key's own bond lengths and 1-3 distances within and between residues by iterated
// pairwise projection (Jacobi updates: each distance moves towards its target, both atoms sharing the
// correction, each atom's sum divided by its number of constraints).
//
// Constraints per residue i: N-CA, CA-C, C-O, N..C, CA..O; to residue i+1: C-N, CA..N, C..CA, O..N,
// CA..CA. Pairs whose key distance is kBreakNm or more (a chain break or chain end in the key) are
// free. Layouts (row-major): xyz and out (F, L, 4, 3) nanometres, atoms N, CA, C, O; key (L, 4, 3).
// All arithmetic is in double; frames run on all threads.
#pragma once

#include <cstdint>

namespace mdllm::projection {

inline constexpr double kBreakNm = 0.45;  // longer than any constrained distance of a connected backbone
inline constexpr int kIterations = 300;  // converges: 60 left angle outliers in 1 of 4 decoded frames

// out[F*L*12] from xyz[F*L*12] and key[L*12] (out may alias xyz); L >= 1, F >= 0, iterations >= 0.
// Throws std::invalid_argument on bad sizes.
void project_to_key_geometry(const float* xyz, int64_t n_frames, int64_t n_res, const float* key, float* out,
                             int iterations = kIterations);

}  // namespace mdllm::projection
