// Per-residue frames, dihedrals, internal coordinates and NeRF reconstruction.
#include <limits>

#include "mdllm/geometry.hpp"
#include "parallel.hpp"
#include "vec3.hpp"

namespace mdllm::geometry {

using detail::Vec3;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Pointer to atom `atom` of residue `res` in frame-local backbone coordinates.
inline const float* atom_ptr(const float* frame, int64_t res, int atom) {
  return frame + (res * kAtomsPerResidue + atom) * 3;
}

inline Vec3 atom(const float* frame, int64_t res, int atom) {
  return detail::load(atom_ptr(frame, res, atom));
}

}  // namespace

void rigid_frames(const float* xyz, int64_t n_frames, int64_t n_res, float* rotations,
                  float* translations) {
  const int64_t n = n_frames * n_res;
  detail::parallel_for(n, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const float* res = xyz + k * kAtomsPerResidue * 3;
      const Vec3 n_at = atom(res, 0, kN), ca = atom(res, 0, kCA), c = atom(res, 0, kC);
      const Vec3 e1 = detail::normalized(c - ca);
      const Vec3 u = n_at - ca;
      const Vec3 e2 = detail::normalized(u - detail::dot(u, e1) * e1);
      const Vec3 e3 = detail::cross(e1, e2);
      float* r = rotations + k * 9;
      // Row-major 3x3 whose columns are e1, e2, e3.
      const Vec3 axes[3] = {e1, e2, e3};
      for (int col = 0; col < 3; ++col) {
        r[0 * 3 + col] = static_cast<float>(axes[col].x);
        r[1 * 3 + col] = static_cast<float>(axes[col].y);
        r[2 * 3 + col] = static_cast<float>(axes[col].z);
      }
      detail::store(ca, translations + k * 3);
    }
  }, 256);
}

void to_local(const float* rotations, const float* translations, const float* points,
              int64_t n_frames, int64_t n_res, int64_t points_per_res, float* out) {
  detail::parallel_for(n_frames * n_res, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const float* r = rotations + k * 9;
      const float* t = translations + k * 3;
      for (int64_t p = 0; p < points_per_res; ++p) {
        const float* x = points + (k * points_per_res + p) * 3;
        float* y = out + (k * points_per_res + p) * 3;
        const double d[3] = {x[0] - t[0], x[1] - t[1], x[2] - t[2]};
        for (int i = 0; i < 3; ++i)  // R^T d
          y[i] = static_cast<float>(r[0 * 3 + i] * d[0] + r[1 * 3 + i] * d[1] + r[2 * 3 + i] * d[2]);
      }
    }
  }, 256);
}

void to_global(const float* rotations, const float* translations, const float* local,
               int64_t n_frames, int64_t n_res, int64_t points_per_res, float* out) {
  detail::parallel_for(n_frames * n_res, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const float* r = rotations + k * 9;
      const float* t = translations + k * 3;
      for (int64_t p = 0; p < points_per_res; ++p) {
        const float* x = local + (k * points_per_res + p) * 3;
        float* y = out + (k * points_per_res + p) * 3;
        const double l[3] = {x[0], x[1], x[2]};
        for (int i = 0; i < 3; ++i)  // R l + t
          y[i] = static_cast<float>(r[i * 3 + 0] * l[0] + r[i * 3 + 1] * l[1] + r[i * 3 + 2] * l[2] + t[i]);
      }
    }
  }, 256);
}

void dihedrals(const float* xyz, int64_t n_frames, int64_t n_res, float* phi, float* psi,
               float* omega) {
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) {
      const float* fr = xyz + f * n_res * kAtomsPerResidue * 3;
      for (int64_t i = 0; i < n_res; ++i) {
        const int64_t o = f * n_res + i;
        phi[o] = i > 0 ? static_cast<float>(detail::dihedral(atom(fr, i - 1, kC), atom(fr, i, kN),
                                                             atom(fr, i, kCA), atom(fr, i, kC)))
                       : kNaN;
        if (i + 1 < n_res) {
          psi[o] = static_cast<float>(detail::dihedral(atom(fr, i, kN), atom(fr, i, kCA),
                                                       atom(fr, i, kC), atom(fr, i + 1, kN)));
          omega[o] = static_cast<float>(detail::dihedral(atom(fr, i, kCA), atom(fr, i, kC),
                                                         atom(fr, i + 1, kN), atom(fr, i + 1, kCA)));
        } else {
          psi[o] = omega[o] = kNaN;
        }
      }
    }
  });
}

void internal_coordinates(const float* xyz, int64_t n_frames, int64_t n_res, float* bonds,
                          float* angles, float* torsions) {
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) {
      const float* fr = xyz + f * n_res * kAtomsPerResidue * 3;
      for (int64_t i = 0; i < n_res; ++i) {
        const int64_t o = (f * n_res + i) * 4;
        const Vec3 n_at = atom(fr, i, kN), ca = atom(fr, i, kCA), c = atom(fr, i, kC),
                   ox = atom(fr, i, kO);
        bonds[o + 0] = static_cast<float>(detail::norm(ca - n_at));
        bonds[o + 1] = static_cast<float>(detail::norm(c - ca));
        bonds[o + 3] = static_cast<float>(detail::norm(ox - c));
        angles[o + 0] = static_cast<float>(detail::angle(n_at, ca, c));
        angles[o + 3] = static_cast<float>(detail::angle(ca, c, ox));
        torsions[o + 0] = i > 0 ? static_cast<float>(detail::dihedral(atom(fr, i - 1, kC), n_at, ca, c))
                                : kNaN;
        torsions[o + 3] = static_cast<float>(detail::dihedral(n_at, ca, c, ox));
        if (i + 1 < n_res) {
          const Vec3 n1 = atom(fr, i + 1, kN), ca1 = atom(fr, i + 1, kCA);
          bonds[o + 2] = static_cast<float>(detail::norm(n1 - c));
          angles[o + 1] = static_cast<float>(detail::angle(ca, c, n1));
          angles[o + 2] = static_cast<float>(detail::angle(c, n1, ca1));
          torsions[o + 1] = static_cast<float>(detail::dihedral(n_at, ca, c, n1));
          torsions[o + 2] = static_cast<float>(detail::dihedral(ca, c, n1, ca1));
        } else {
          bonds[o + 2] = angles[o + 1] = angles[o + 2] = torsions[o + 1] = torsions[o + 2] = kNaN;
        }
      }
    }
  });
}

void nerf(const float* bonds, const float* angles, const float* torsions, int64_t n_frames,
          int64_t n_res, float* xyz) {
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) {
      const float* b = bonds + f * n_res * 4;
      const float* a = angles + f * n_res * 4;
      const float* t = torsions + f * n_res * 4;
      float* out = xyz + f * n_res * kAtomsPerResidue * 3;
      if (n_res == 0) continue;
      Vec3 n_at{0, 0, 0};
      Vec3 ca{b[0], 0, 0};
      Vec3 c = ca + Vec3{-b[1] * std::cos(a[0]), b[1] * std::sin(a[0]), 0};
      for (int64_t i = 0;; ++i) {
        const float* bi = b + i * 4;
        const float* ai = a + i * 4;
        const float* ti = t + i * 4;
        float* r = out + i * kAtomsPerResidue * 3;
        detail::store(n_at, r + kN * 3);
        detail::store(ca, r + kCA * 3);
        detail::store(c, r + kC * 3);
        detail::store(detail::place(n_at, ca, c, bi[3], ai[3], ti[3]), r + kO * 3);
        if (i + 1 == n_res) break;
        const Vec3 n1 = detail::place(n_at, ca, c, bi[2], ai[1], ti[1]);
        const Vec3 ca1 = detail::place(ca, c, n1, bi[4 + 0], ai[2], ti[2]);
        const Vec3 c1 = detail::place(c, n1, ca1, bi[4 + 1], ai[4 + 0], ti[4 + 0]);
        n_at = n1;
        ca = ca1;
        c = c1;
      }
    }
  });
}

}  // namespace mdllm::geometry
