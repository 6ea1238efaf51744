// Optimal superposition and RMSD (Horn's quaternion method; Jacobi eigen-solver on the 4x4 key matrix).
#include <cmath>
#include <vector>

#include "mdllm/geometry.hpp"
#include "horn.hpp"
#include "parallel.hpp"

namespace mdllm::geometry {

namespace {

// A point set centred on its centroid, stored as separate x, y, z arrays so that the
// covariance loop vectorises, plus its squared norm G = sum |p|^2.
struct Centred {
  std::vector<double> x, y, z;
  double centroid[3] = {0, 0, 0};
  double g = 0;
};

void centre(const float* p, int64_t n, Centred& out) {
  out.x.resize(n);
  out.y.resize(n);
  out.z.resize(n);
  double s[3] = {0, 0, 0};
  for (int64_t k = 0; k < n; ++k)
    for (int d = 0; d < 3; ++d) s[d] += p[k * 3 + d];
  for (int d = 0; d < 3; ++d) out.centroid[d] = n > 0 ? s[d] / n : 0.0;
  double g = 0;
  for (int64_t k = 0; k < n; ++k) {
    out.x[k] = p[k * 3 + 0] - out.centroid[0];
    out.y[k] = p[k * 3 + 1] - out.centroid[1];
    out.z[k] = p[k * 3 + 2] - out.centroid[2];
    g += out.x[k] * out.x[k] + out.y[k] * out.y[k] + out.z[k] * out.z[k];
  }
  out.g = g;
}

// S[a][b] = sum_k mobile_a(k) * ref_b(k)
void covariance(const Centred& m, const Centred& r, int64_t n, double s[3][3]) {
  double xx = 0, xy = 0, xz = 0, yx = 0, yy = 0, yz = 0, zx = 0, zy = 0, zz = 0;
  const double *mx = m.x.data(), *my = m.y.data(), *mz = m.z.data();
  const double *rx = r.x.data(), *ry = r.y.data(), *rz = r.z.data();
  for (int64_t k = 0; k < n; ++k) {
    xx += mx[k] * rx[k]; xy += mx[k] * ry[k]; xz += mx[k] * rz[k];
    yx += my[k] * rx[k]; yy += my[k] * ry[k]; yz += my[k] * rz[k];
    zx += mz[k] * rx[k]; zy += mz[k] * ry[k]; zz += mz[k] * rz[k];
  }
  s[0][0] = xx; s[0][1] = xy; s[0][2] = xz;
  s[1][0] = yx; s[1][1] = yy; s[1][2] = yz;
  s[2][0] = zx; s[2][1] = zy; s[2][2] = zz;
}

double rmsd_from(double g_mobile, double g_ref, double lambda, int64_t n) {
  const double msd = (g_mobile + g_ref - 2.0 * lambda) / static_cast<double>(n);
  return msd > 0 ? std::sqrt(msd) : 0.0;
}

}  // namespace

void rmsd_to_reference(const float* points, int64_t n_frames, int64_t n_points, const float* ref,
                       float* rmsd) {
  Centred r;
  centre(ref, n_points, r);
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    Centred m;
    double s[3][3];
    for (int64_t f = begin; f < end; ++f) {
      centre(points + f * n_points * 3, n_points, m);
      covariance(m, r, n_points, s);
      rmsd[f] = static_cast<float>(rmsd_from(m.g, r.g, horn_max_eigen(s, nullptr), n_points));
    }
  });
}

void superpose(float* points, int64_t n_frames, int64_t n_points, const float* ref, float* rmsd) {
  Centred r;
  centre(ref, n_points, r);
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    Centred m;
    double s[3][3], q[4];
    for (int64_t f = begin; f < end; ++f) {
      float* p = points + f * n_points * 3;
      centre(p, n_points, m);
      covariance(m, r, n_points, s);
      const double lambda = horn_max_eigen(s, q);
      if (rmsd) rmsd[f] = static_cast<float>(rmsd_from(m.g, r.g, lambda, n_points));
      const double a = q[0], b = q[1], c = q[2], d = q[3];
      const double rot[3][3] = {
          {a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)},
          {2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)},
          {2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d}};
      for (int64_t k = 0; k < n_points; ++k) {
        const double x[3] = {m.x[k], m.y[k], m.z[k]};
        for (int i = 0; i < 3; ++i)
          p[k * 3 + i] = static_cast<float>(rot[i][0] * x[0] + rot[i][1] * x[1] + rot[i][2] * x[2] +
                                            r.centroid[i]);
      }
    }
  });
}

void pairwise_rmsd(const float* points, int64_t n_frames, int64_t n_points, float* out) {
  std::vector<Centred> frames(n_frames);
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) centre(points + f * n_points * 3, n_points, frames[f]);
  });
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    double s[3][3];
    for (int64_t i = begin; i < end; ++i) {
      out[i * n_frames + i] = 0.0f;
      for (int64_t j = i + 1; j < n_frames; ++j) {
        covariance(frames[i], frames[j], n_points, s);
        const float v = static_cast<float>(
            rmsd_from(frames[i].g, frames[j].g, horn_max_eigen(s, nullptr), n_points));
        out[i * n_frames + j] = v;
        out[j * n_frames + i] = v;
      }
    }
  });
}

}  // namespace mdllm::geometry
