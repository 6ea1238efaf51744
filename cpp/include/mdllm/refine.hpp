// Restrained geometric refinement of backbones: every atom moves as little as it can while bonds,
// backbone angles and peptide planes are pulled to ideal distances, overlapping atoms of residues at
// least 2 apart are pushed apart, and (phi, psi) outside the allowed Ramachandran regions are pulled
// to the nearest allowed region. Minimised per frame by L-BFGS, frames in parallel.
// Layout as in geometry.hpp: xyz (F, L, 4, 3) float32 nanometres, atoms N, CA, C, O. Internally the
// energy is in Ångström (weights per Å², the Ramachandran weight per radian²). Raw pointers and
// explicit sizes; callers allocate outputs and check shapes.
#pragma once

#include <cstdint>

namespace mdllm::refine {

// One family of restrained distances: atom `a` (0..3) of residue i to atom `b` of residue
// i + offset (offset 0 or 1), for every i. A pair with offset 1 crosses a peptide bond and takes
// `cis_A` where that bond is cis in the input (|omega| < 90 degrees), `trans_A` otherwise.
struct IdealPair {
  int32_t a, b, offset;
  double trans_A, cis_A;
};

// Per residue class, the distance (radians) from each phi x psi cell to the nearest allowed cell, its
// derivatives along phi and psi and its mixed derivative: four (n_classes, bins, bins) grids, cell
// (i, j) covering phi in [-pi + i step, -pi + (i + 1) step), psi likewise. The energy interpolates
// them by bicubic Hermite interpolation between cell centres (periodic in both angles): continuous
// with a continuous gradient, so that a gradient stop means a minimum.
struct RamaField {
  const double* dist = nullptr;
  const double* d_phi = nullptr;
  const double* d_psi = nullptr;
  const double* d_phi_psi = nullptr;
  int32_t n_classes = 0, bins = 0;
  double step = 0;
};

struct Options {
  double geometry_weight = 10.0;  // per Å² of distance and overlap error
  double restraint = 0.02;        // per Å² of displacement from the input
  double rama = 20.0;             // per radian² of distance to the allowed region (0: off)
  double radius_A[4] = {1.55, 1.70, 1.70, 1.52};  // N, CA, C, O
  double allowed_overlap_A = 0.4;  // atoms of residues >= 2 apart are pushed to radius sum minus this
  double ca_min_A = 3.1;           // and two CAs to at least this
  double contact_margin_A = 0.5;   // pairs are listed this far beyond touching, for the atoms to move
  int32_t iterations = 1500;       // at most, split evenly over the rounds (a frame stops on the gradient first)
  int32_t rounds = 3;              // contacts are listed again at the start of every round
  int32_t memory = 10;             // L-BFGS correction pairs
  double max_step_A = 0.3;         // no coordinate moves more than this in one trial step
  double gradient_tol = 1e-2;      // a round stops when no gradient component exceeds this (per Å)
};

// Per-frame outcome of refine(): energy at the end, L-BFGS iterations and energy evaluations over
// all rounds, largest gradient component at the end.
struct FrameStats {
  double energy;
  int32_t iterations, evaluations;
  double max_gradient;
};

// Refines F frames of L residues (L >= 2) from xyz into out (same layout, may alias xyz).
// rama_class (L entries, class index per residue) and field enable the Ramachandran term; pass
// nullptr for either to leave it off. stats (F entries) may be nullptr. Frames run in parallel on
// num_threads() threads. Throws std::invalid_argument on non-finite coordinates or a class index out
// of the field's range.
void refine(const float* xyz, int64_t n_frames, int64_t n_res, const IdealPair* pairs, int32_t n_pairs,
            const int32_t* rama_class, const RamaField* field, const Options& options, float* out,
            FrameStats* stats);

// The energy refine() minimises, at `xyz`, for atoms restrained to `input` (both F frames, nm),
// with contacts listed at `xyz` and cis/trans peptides read from `input`: energy (F) and, if grad is
// not nullptr, its gradient (F, L, 4, 3) in energy units per Å.
void energy(const float* xyz, const float* input, int64_t n_frames, int64_t n_res, const IdealPair* pairs,
            int32_t n_pairs, const int32_t* rama_class, const RamaField* field, const Options& options,
            double* energy, double* grad);

}  // namespace mdllm::refine
