// C++-only checks of the refinement API (mdllm/refine.hpp), run by ctest: an ideal helix is a minimum,
// a noisy one gets its geometry back, the gradient is the energy's, frames are independent, bad input
// throws. tests/test_refine.py compares the kernel with the Python reference on real frames.
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "mdllm/geometry.hpp"
#include "mdllm/refine.hpp"

namespace g = mdllm::geometry;
namespace r = mdllm::refine;

constexpr double kPi = 3.14159265358979323846;

// An alpha helix of ideal (Engh & Huber) internal coordinates.
static std::vector<float> helix(int64_t residues) {
  std::vector<float> b, a, t;
  const float deg = static_cast<float>(kPi / 180);
  for (int64_t k = 0; k < residues; ++k) {
    for (float v : {0.1458f, 0.1525f, 0.1329f, 0.1231f}) b.push_back(v);
    for (float v : {111.2f, 116.2f, 121.7f, 120.1f}) a.push_back(v * deg);
    for (float v : {-57.f, -47.f, 180.f, 133.f}) t.push_back(v * deg);
  }
  std::vector<float> xyz(residues * 12);
  g::nerf(b.data(), a.data(), t.data(), 1, residues, xyz.data());
  return xyz;
}

static double distance_A(const std::vector<float>& xyz, int64_t i, int64_t j) {
  double s = 0;
  for (int c = 0; c < 3; ++c) s += std::pow(10.0 * (xyz[3 * i + c] - xyz[3 * j + c]), 2);
  return std::sqrt(s);
}

// The reference's restrained pairs (bonds, 1-3 distances, peptide plane), measured on the helix itself.
static std::vector<r::IdealPair> pairs_of(const std::vector<float>& ideal) {
  const int32_t list[11][3] = {{0, 1, 0}, {1, 2, 0}, {2, 3, 0}, {2, 0, 1}, {0, 2, 0}, {1, 3, 0},
                               {1, 0, 1}, {3, 0, 1}, {2, 1, 1}, {1, 1, 1}, {3, 1, 1}};
  std::vector<r::IdealPair> pairs;
  for (const auto& p : list) {
    const double d = distance_A(ideal, 4 * 5 + p[0], 4 * (5 + p[2]) + p[1]);
    pairs.push_back({p[0], p[1], p[2], d, d});
  }
  return pairs;
}

int main() {
  const int64_t L = 24, n = 12 * L, F = 3;
  const auto ideal = helix(L);
  const auto pairs = pairs_of(ideal);
  const int32_t P = static_cast<int32_t>(pairs.size());
  r::Options opt;
  opt.rama = 0;

  // The ideal helix barely moves (only the position restraint and no overlaps act on it).
  std::vector<float> out(n);
  r::FrameStats st{};
  r::refine(ideal.data(), 1, L, pairs.data(), P, nullptr, nullptr, opt, out.data(), &st);
  double moved = 0;
  for (int64_t k = 0; k < n; ++k) moved = std::max(moved, 10.0 * std::fabs(out[k] - ideal[k]));
  CHECK(moved < 0.02);
  CHECK(st.energy < 1e-3);

  // Noisy copies (0.2 Å per axis) get their bonds back and end closer to the helix than they started.
  std::mt19937 rng(3);
  std::normal_distribution<float> noise(0.0f, 0.02f);
  std::vector<float> noisy(F * n), refined(F * n);
  for (int64_t k = 0; k < F * n; ++k) noisy[k] = ideal[k % n] + noise(rng);
  std::vector<r::FrameStats> stats(F);
  r::refine(noisy.data(), F, L, pairs.data(), P, nullptr, nullptr, opt, refined.data(), stats.data());
  std::vector<double> e_input(F), e_out(F);
  r::energy(noisy.data(), noisy.data(), F, L, pairs.data(), P, nullptr, nullptr, opt, e_input.data(), nullptr);
  r::energy(refined.data(), noisy.data(), F, L, pairs.data(), P, nullptr, nullptr, opt, e_out.data(), nullptr);
  for (int64_t f = 0; f < F; ++f) {
    CHECK(e_out[f] < 0.05 * e_input[f]);
    CHECK(std::fabs(e_out[f] - stats[f].energy) < 1e-4 * e_out[f]);
    CHECK(stats[f].max_gradient <= opt.gradient_tol);
    std::vector<float> frame(refined.begin() + f * n, refined.begin() + (f + 1) * n);
    for (int64_t res = 0; res < L; ++res)
      CHECK(std::fabs(distance_A(frame, 4 * res, 4 * res + 1) - pairs[0].trans_A) < 0.05);  // N-CA
    double before = 0, after = 0;
    for (int64_t k = 0; k < n; ++k) {
      before += std::pow(noisy[f * n + k] - ideal[k], 2);
      after += std::pow(refined[f * n + k] - ideal[k], 2);
    }
    CHECK(after < before);
  }

  // Frames are independent: one frame alone, or on one thread, gives the same result.
  std::vector<float> alone(n);
  r::refine(noisy.data() + n, 1, L, pairs.data(), P, nullptr, nullptr, opt, alone.data(), nullptr);
  for (int64_t k = 0; k < n; ++k) CHECK(alone[k] == refined[n + k]);
  mdllm::set_num_threads(1);
  std::vector<float> serial(F * n);
  r::refine(noisy.data(), F, L, pairs.data(), P, nullptr, nullptr, opt, serial.data(), nullptr);
  mdllm::set_num_threads(0);
  for (int64_t k = 0; k < F * n; ++k) CHECK(serial[k] == refined[k]);

  // The gradient is the energy's, Ramachandran term included: a smooth periodic field with its exact
  // derivatives at the cell centres, two classes.
  const int32_t bins = 36;
  const double step = 2 * kPi / bins;
  std::vector<double> grids(4 * 2 * bins * bins);
  const int64_t size = 2 * bins * bins;
  for (int c = 0; c < 2; ++c)
    for (int i = 0; i < bins; ++i)
      for (int j = 0; j < bins; ++j) {
        const double phi = -kPi + (i + 0.5) * step, psi = -kPi + (j + 0.5) * step, s = 0.2 + 0.1 * c;
        const int64_t k = (c * bins + i) * bins + j;
        grids[k] = 0.3 + s * std::sin(phi) * std::cos(psi);
        grids[size + k] = s * std::cos(phi) * std::cos(psi);
        grids[2 * size + k] = -s * std::sin(phi) * std::sin(psi);
        grids[3 * size + k] = -s * std::cos(phi) * std::sin(psi);
      }
  const r::RamaField field{grids.data(), grids.data() + size, grids.data() + 2 * size, grids.data() + 3 * size,
                           2, bins, step};
  std::vector<int32_t> classes(L);
  for (int64_t res = 0; res < L; ++res) classes[res] = res % 2;
  r::Options with_rama;
  std::vector<double> grad(n), e(1), e_up(1), e_down(1);
  std::vector<float> x(noisy.begin(), noisy.begin() + n);
  r::energy(x.data(), noisy.data(), 1, L, pairs.data(), P, classes.data(), &field, with_rama, e.data(), grad.data());
  std::vector<double> e_off(1);
  r::energy(x.data(), noisy.data(), 1, L, pairs.data(), P, nullptr, nullptr, with_rama, e_off.data(), nullptr);
  CHECK(e[0] > e_off[0] + 1.0);  // the field (>= 0.1 everywhere) adds energy at every inner residue
  for (int64_t k : {0, 7, 50, 101, 150, 200, 283}) {
    const float h = 1e-3f;  // nm
    std::vector<float> up = x, down = x;
    up[k] += h;
    down[k] -= h;
    r::energy(up.data(), noisy.data(), 1, L, pairs.data(), P, classes.data(), &field, with_rama, e_up.data(), nullptr);
    r::energy(down.data(), noisy.data(), 1, L, pairs.data(), P, classes.data(), &field, with_rama, e_down.data(),
              nullptr);
    const double numeric = (e_up[0] - e_down[0]) / (2 * 10.0 * (up[k] - x[k]));
    CHECK(std::fabs(numeric - grad[k]) < 0.01 + 0.01 * std::fabs(grad[k]));
  }

  // Bad input throws.
  auto throws = [](auto&& fn) {
    try {
      fn();
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  std::vector<float> bad = ideal;
  bad[17] = std::nanf("");
  CHECK(throws([&] { r::refine(bad.data(), 1, L, pairs.data(), P, nullptr, nullptr, opt, out.data(), nullptr); }));
  CHECK(throws([&] { r::refine(ideal.data(), 1, 1, pairs.data(), P, nullptr, nullptr, opt, out.data(), nullptr); }));
  classes[3] = 2;
  CHECK(throws([&] {
    r::refine(ideal.data(), 1, L, pairs.data(), P, classes.data(), &field, with_rama, out.data(), nullptr);
  }));
  std::vector<r::IdealPair> wrong = pairs;
  wrong[0].offset = 2;
  CHECK(throws([&] { r::refine(ideal.data(), 1, L, wrong.data(), P, nullptr, nullptr, opt, out.data(), nullptr); }));

  std::printf(failures ? "%d checks failed\n" : "all refinement checks passed\n", failures);
  return failures ? 1 : 0;
}
