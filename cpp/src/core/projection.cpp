// Projection onto the key frame's local geometry (mdllm/projection.hpp); the numpy reference is
// python/mdllm/geometry/projection.py.
#include "mdllm/projection.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "parallel.hpp"

namespace mdllm::projection {

namespace {

struct Constraint {
  int64_t a, b;   // flat atom indices 4 i + k (k = N, CA, C, O)
  double target;  // the key's distance, nm
};

double distance(const double* p, const double* q) {
  const double dx = q[0] - p[0], dy = q[1] - p[1], dz = q[2] - p[2];
  return std::sqrt(dx * dx + dy * dy + dz * dz);
}

}  // namespace

void project_to_key_geometry(const float* xyz, int64_t n_frames, int64_t n_res, const float* key, float* out,
                             int iterations) {
  if (n_frames < 0 || n_res < 1 || iterations < 0)
    throw std::invalid_argument("projection needs frames >= 0, residues >= 1 and iterations >= 0");
  const int64_t n_atoms = 4 * n_res;
  const std::vector<double> k(key, key + n_atoms * 3);

  // The constrained pairs that the key keeps connected, in the reference's order.
  static constexpr int kWithin[5][2] = {{0, 1}, {1, 2}, {2, 3}, {0, 2}, {1, 3}};
  static constexpr int kBetween[5][2] = {{2, 0}, {1, 0}, {2, 1}, {3, 0}, {1, 1}};  // atom of i, atom of i + 1
  std::vector<Constraint> pairs;
  auto add = [&](int64_t a, int64_t b) {
    const double target = distance(&k[a * 3], &k[b * 3]);
    if (target < kBreakNm) pairs.push_back({a, b, target});
  };
  for (int64_t i = 0; i < n_res; ++i)
    for (const auto& p : kWithin) add(4 * i + p[0], 4 * i + p[1]);
  for (int64_t i = 0; i + 1 < n_res; ++i)
    for (const auto& p : kBetween) add(4 * i + p[0], 4 * (i + 1) + p[1]);

  std::vector<double> share(n_atoms, 0.0);  // constraints per atom; each atom's corrections are averaged
  for (const auto& c : pairs) share[c.a] += 1, share[c.b] += 1;
  for (auto& s : share) s = s == 0 ? 1.0 : 1.0 / s;  // as a reciprocal: multiplied in the loop below

  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    std::vector<double> x(n_atoms * 3), delta(n_atoms * 3);
    for (int64_t f = begin; f < end; ++f) {
      const float* in = xyz + f * n_atoms * 3;
      std::copy(in, in + n_atoms * 3, x.begin());
      for (int it = 0; it < iterations; ++it) {
        std::fill(delta.begin(), delta.end(), 0.0);
        for (const auto& c : pairs) {  // every correction from the same positions (Jacobi)
          const double* p = &x[c.a * 3];
          const double* q = &x[c.b * 3];
          const double dist = distance(p, q);
          const double scale = 0.5 * (dist - c.target) / std::max(dist, 1e-9);
          const double to_a = scale * share[c.a], to_b = scale * share[c.b];
          for (int d = 0; d < 3; ++d) {
            const double step = q[d] - p[d];
            delta[c.a * 3 + d] += to_a * step;
            delta[c.b * 3 + d] -= to_b * step;
          }
        }
        for (int64_t j = 0; j < n_atoms * 3; ++j) x[j] += delta[j];
      }
      std::transform(x.begin(), x.end(), out + f * n_atoms * 3, [](double v) { return static_cast<float>(v); });
    }
  });
}

}  // namespace mdllm::projection
