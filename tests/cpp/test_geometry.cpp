// C++-only checks of the public geometry API (run by ctest; tests/test_cpp_api.py builds and runs it).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "check.hpp"
#include "mdllm/geometry.hpp"

namespace g = mdllm::geometry;


// A random-walk backbone with realistic internal coordinates, so every kernel sees a real shape.
static std::vector<float> random_backbone(int64_t frames, int64_t residues, std::mt19937& rng) {
  std::uniform_real_distribution<float> torsion(-3.1f, 3.1f);
  std::vector<float> b, a, t;
  for (int64_t k = 0; k < frames * residues; ++k) {
    for (float v : {0.1458f, 0.1525f, 0.1329f, 0.1231f}) b.push_back(v);
    for (float v : {1.94f, 2.03f, 2.12f, 2.10f}) a.push_back(v);
    for (int i = 0; i < 4; ++i) t.push_back(torsion(rng));
  }
  std::vector<float> xyz(frames * residues * 12);
  g::nerf(b.data(), a.data(), t.data(), frames, residues, xyz.data());
  return xyz;
}

int main() {
  std::mt19937 rng(7);
  const int64_t F = 6, L = 40, N = L * 4;
  auto xyz = random_backbone(F, L, rng);

  // Internal coordinates -> NeRF reproduces the chain up to a rigid motion.
  std::vector<float> b(F * L * 4), a(F * L * 4), t(F * L * 4), rebuilt(xyz.size()), rmsd(F);
  g::internal_coordinates(xyz.data(), F, L, b.data(), a.data(), t.data());
  g::nerf(b.data(), a.data(), t.data(), F, L, rebuilt.data());
  for (int64_t f = 0; f < F; ++f) {
    float r = 1;
    g::rmsd_to_reference(rebuilt.data() + f * N * 3, 1, N, xyz.data() + f * N * 3, &r);
    CHECK(r < 1e-4f);
  }

  // Pairwise RMSD is symmetric, zero on the diagonal and equal to rmsd_to_reference.
  std::vector<float> pairs(F * F);
  g::pairwise_rmsd(xyz.data(), F, N, pairs.data());
  g::rmsd_to_reference(xyz.data(), F, N, xyz.data() + 2 * N * 3, rmsd.data());
  for (int64_t i = 0; i < F; ++i) {
    CHECK(pairs[i * F + i] == 0.0f);
    CHECK(std::fabs(pairs[i * F + 2] - rmsd[i]) < 1e-5f);
    for (int64_t j = 0; j < F; ++j) CHECK(pairs[i * F + j] == pairs[j * F + i]);
  }

  // Superposition brings a frame onto the reference with the reported RMSD.
  std::vector<float> moved(xyz.begin(), xyz.begin() + N * 3), r1(1);
  g::superpose(moved.data(), 1, N, xyz.data() + N * 3, r1.data());
  double msd = 0;
  for (int64_t k = 0; k < N * 3; ++k) {
    const double d = moved[k] - xyz[N * 3 + k];
    msd += d * d;
  }
  CHECK(std::fabs(std::sqrt(msd / N) - r1[0]) < 1e-5);

  // Frames: to_local then to_global is the identity.
  std::vector<float> rot(F * L * 9), trans(F * L * 3), local(xyz.size()), back(xyz.size());
  g::rigid_frames(xyz.data(), F, L, rot.data(), trans.data());
  g::to_local(rot.data(), trans.data(), xyz.data(), F, L, 4, local.data());
  g::to_global(rot.data(), trans.data(), local.data(), F, L, 4, back.data());
  for (size_t k = 0; k < xyz.size(); ++k) CHECK(std::fabs(back[k] - xyz[k]) < 1e-5f);

  // Thread count does not change results.
  mdllm::set_num_threads(1);
  std::vector<float> pairs1(F * F);
  g::pairwise_rmsd(xyz.data(), F, N, pairs1.data());
  mdllm::set_num_threads(0);
  for (int64_t k = 0; k < F * F; ++k) CHECK(pairs1[k] == pairs[k]);

  std::printf(failures ? "%d checks failed\n" : "all geometry checks passed\n", failures);
  return failures ? 1 : 0;
}
