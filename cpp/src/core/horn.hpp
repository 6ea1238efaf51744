// Horn's quaternion method, shared by the superposition kernels and the motion tokenizer: the largest
// eigenvalue of the symmetric 4x4 key matrix built from a covariance s[a][b] = sum_k mobile_a(k) *
// ref_b(k), and its eigenvector (cyclic Jacobi). Private to the core.
#pragma once

#include <cmath>

namespace mdllm::geometry {

// Largest eigenvalue of Horn's symmetric key matrix, and its eigenvector (a unit quaternion
// q0 + q1 i + q2 j + q3 k rotating mobile onto reference) when q is not null.
inline double horn_max_eigen(const double s[3][3], double* q) {
  double k[4][4] = {
      {s[0][0] + s[1][1] + s[2][2], s[1][2] - s[2][1], s[2][0] - s[0][2], s[0][1] - s[1][0]},
      {s[1][2] - s[2][1], s[0][0] - s[1][1] - s[2][2], s[0][1] + s[1][0], s[2][0] + s[0][2]},
      {s[2][0] - s[0][2], s[0][1] + s[1][0], -s[0][0] + s[1][1] - s[2][2], s[1][2] + s[2][1]},
      {s[0][1] - s[1][0], s[2][0] + s[0][2], s[1][2] + s[2][1], -s[0][0] - s[1][1] + s[2][2]}};
  double v[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
  // Cyclic Jacobi rotations until the off-diagonal part vanishes.
  for (int sweep = 0; sweep < 50; ++sweep) {
    double off = 0, scale = 0;
    for (int i = 0; i < 4; ++i) {
      scale += k[i][i] * k[i][i];
      for (int j = i + 1; j < 4; ++j) off += k[i][j] * k[i][j];
    }
    if (off <= 1e-30 * (scale + 1e-300)) break;
    for (int p = 0; p < 3; ++p) {
      for (int r = p + 1; r < 4; ++r) {
        if (k[p][r] == 0.0) continue;
        const double theta = (k[r][r] - k[p][p]) / (2.0 * k[p][r]);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), sn = t * c;
        for (int i = 0; i < 4; ++i) {  // columns p, r of K
          const double kip = k[i][p], kir = k[i][r];
          k[i][p] = c * kip - sn * kir;
          k[i][r] = sn * kip + c * kir;
        }
        for (int i = 0; i < 4; ++i) {  // rows p, r of K
          const double kpi = k[p][i], kri = k[r][i];
          k[p][i] = c * kpi - sn * kri;
          k[r][i] = sn * kpi + c * kri;
        }
        for (int i = 0; i < 4; ++i) {
          const double vip = v[i][p], vir = v[i][r];
          v[i][p] = c * vip - sn * vir;
          v[i][r] = sn * vip + c * vir;
        }
      }
    }
  }
  int best = 0;
  for (int i = 1; i < 4; ++i)
    if (k[i][i] > k[best][best]) best = i;
  if (q)
    for (int i = 0; i < 4; ++i) q[i] = v[i][best];
  return k[best][best];
}

}  // namespace mdllm::geometry
