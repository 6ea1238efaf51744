// Embedding the mdllm core in a C++ program: build an ideal alpha helix from internal coordinates,
// measure its dihedrals, and superpose a rotated copy back onto it.
#include <cmath>
#include <cstdio>
#include <vector>

#include "mdllm/geometry.hpp"

int main() {
  namespace g = mdllm::geometry;
  constexpr int64_t kResidues = 12;
  const double deg = M_PI / 180.0;
  std::vector<float> bonds, angles, torsions;
  for (int64_t i = 0; i < kResidues; ++i) {
    for (double b : {0.1458, 0.1525, 0.1329, 0.1231}) bonds.push_back(static_cast<float>(b));
    for (double a : {111.0, 116.2, 121.7, 120.5}) angles.push_back(static_cast<float>(a * deg));
    for (double t : {-57.0, -47.0, 180.0, 133.0}) torsions.push_back(static_cast<float>(t * deg));
  }
  std::vector<float> helix(kResidues * 4 * 3);
  g::nerf(bonds.data(), angles.data(), torsions.data(), 1, kResidues, helix.data());

  std::vector<float> phi(kResidues), psi(kResidues), omega(kResidues);
  g::dihedrals(helix.data(), 1, kResidues, phi.data(), psi.data(), omega.data());
  std::printf("residue 5: phi %.1f psi %.1f omega %.1f degrees\n", phi[5] / deg, psi[5] / deg, omega[5] / deg);

  // Rotate by 90 degrees about z and shift; the optimal superposition undoes it.
  std::vector<float> moved(helix.size());
  for (size_t k = 0; k < helix.size(); k += 3) {
    moved[k] = -helix[k + 1] + 1.0f;
    moved[k + 1] = helix[k] - 2.0f;
    moved[k + 2] = helix[k + 2] + 0.5f;
  }
  float rmsd = 0;
  g::rmsd_to_reference(moved.data(), 1, kResidues * 4, helix.data(), &rmsd);
  std::printf("RMSD of the moved copy after superposition: %.6f nm\n", rmsd);
  return rmsd < 1e-4f && std::fabs(phi[5] / deg + 57.0) < 0.01 ? 0 : 1;
}
