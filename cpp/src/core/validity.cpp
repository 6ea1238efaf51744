// Backbone validity kernels: bond geometry against ideal values and steric clashes, per frame.
#include "mdllm/validity.hpp"

#include <algorithm>
#include <cmath>

#include "mdllm/geometry.hpp"
#include "parallel.hpp"
#include "vec3.hpp"

namespace mdllm::validity {

using detail::Vec3;
using geometry::kAtomsPerResidue;
using geometry::kC;
using geometry::kCA;
using geometry::kN;
using geometry::kO;

namespace {

inline Vec3 atom(const float* frame, int64_t res, int a) {
  return detail::load(frame + (res * kAtomsPerResidue + a) * 3);
}

// Running count and maximum of |z| over a frame's bonds or angles.
struct Tally {
  int32_t outliers = 0;
  float worst = 0.0f;
  int32_t worst_res = -1;

  void add(double value, float ideal, float sigma, float max_z, int64_t res) {
    const double z = std::fabs(value - ideal) / sigma;
    if (!(z == z)) return;  // NaN from non-finite coordinates
    if (z > max_z) ++outliers;
    if (z > worst || worst_res < 0) {
      worst = static_cast<float>(z);
      worst_res = static_cast<int32_t>(res);
    }
  }
};

}  // namespace

void check_bonds(const float* xyz, int64_t n_frames, int64_t n_res, const uint8_t* chain_end,
                 const IdealGeometry& ideal, float max_z, float break_nm, int32_t* n_bond_outliers,
                 int32_t* n_angle_outliers, int32_t* n_breaks, float* worst_bond_z,
                 float* worst_angle_z, int32_t* worst_bond_res, int32_t* worst_angle_res) {
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) {
      const float* fr = xyz + f * n_res * kAtomsPerResidue * 3;
      Tally bonds, angles;
      int32_t breaks = 0;
      for (int64_t i = 0; i < n_res; ++i) {
        const Vec3 n = atom(fr, i, kN), ca = atom(fr, i, kCA), c = atom(fr, i, kC), o = atom(fr, i, kO);
        bonds.add(detail::norm(ca - n), ideal.bond[0], ideal.bond_sigma[0], max_z, i);
        bonds.add(detail::norm(c - ca), ideal.bond[1], ideal.bond_sigma[1], max_z, i);
        bonds.add(detail::norm(o - c), ideal.bond[3], ideal.bond_sigma[3], max_z, i);
        angles.add(detail::angle(n, ca, c), ideal.angle[0], ideal.angle_sigma[0], max_z, i);
        angles.add(detail::angle(ca, c, o), ideal.angle[3], ideal.angle_sigma[3], max_z, i);
        if (i + 1 >= n_res || chain_end[i]) continue;
        const Vec3 n1 = atom(fr, i + 1, kN), ca1 = atom(fr, i + 1, kCA);
        const double peptide = detail::norm(n1 - c);
        if (peptide > break_nm) ++breaks;
        bonds.add(peptide, ideal.bond[2], ideal.bond_sigma[2], max_z, i);
        angles.add(detail::angle(ca, c, n1), ideal.angle[1], ideal.angle_sigma[1], max_z, i);
        angles.add(detail::angle(c, n1, ca1), ideal.angle[2], ideal.angle_sigma[2], max_z, i);
      }
      n_bond_outliers[f] = bonds.outliers;
      n_angle_outliers[f] = angles.outliers;
      n_breaks[f] = breaks;
      worst_bond_z[f] = bonds.worst;
      worst_angle_z[f] = angles.worst;
      worst_bond_res[f] = bonds.worst_res;
      worst_angle_res[f] = angles.worst_res;
    }
  });
}

void find_clashes(const float* xyz, int64_t n_frames, int64_t n_res, const int32_t* chain_index,
                  const float* radius, float overlap_nm, float ca_min_nm, int32_t min_separation,
                  int32_t* n_clashes, int32_t* n_ca_clashes, float* worst_overlap,
                  int32_t* worst_pair) {
  const float max_radius = *std::max_element(radius, radius + kAtomsPerResidue);
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) {
      const float* fr = xyz + f * n_res * kAtomsPerResidue * 3;
      // No atom of a residue lies further than `extent` from its CA in this frame, so residue
      // pairs whose CAs are further apart than `reach` cannot hold a clash or a closest contact.
      double extent = 0.0;
      for (int64_t i = 0; i < n_res; ++i)
        for (int a = 0; a < kAtomsPerResidue; ++a)
          extent = std::max(extent, detail::norm(atom(fr, i, a) - atom(fr, i, kCA)));
      const double reach = std::max<double>(2.0 * extent + 2.0 * max_radius, ca_min_nm);
      int32_t clashes = 0, ca_clashes = 0;
      double worst = 0.0;
      int32_t wi = -1, wj = -1;
      for (int64_t i = 0; i < n_res; ++i) {
        const Vec3 ca_i = atom(fr, i, kCA);
        for (int64_t j = i + 1; j < n_res; ++j) {
          if (chain_index[i] == chain_index[j] && j - i < min_separation) continue;
          const double d_ca = detail::norm(atom(fr, j, kCA) - ca_i);
          if (d_ca < ca_min_nm) ++ca_clashes;
          if (!(d_ca <= reach)) continue;
          for (int a = 0; a < kAtomsPerResidue; ++a) {
            const Vec3 p = atom(fr, i, a);
            for (int b = 0; b < kAtomsPerResidue; ++b) {
              const double overlap = radius[a] + radius[b] - detail::norm(atom(fr, j, b) - p);
              if (overlap > overlap_nm) ++clashes;
              if (overlap > worst) {
                worst = overlap;
                wi = static_cast<int32_t>(i);
                wj = static_cast<int32_t>(j);
              }
            }
          }
        }
      }
      n_clashes[f] = clashes;
      n_ca_clashes[f] = ca_clashes;
      worst_overlap[f] = static_cast<float>(worst);
      worst_pair[2 * f] = wi;
      worst_pair[2 * f + 1] = wj;
    }
  });
}

}  // namespace mdllm::validity
