// The torsion-codebook tokenizer on small tokenizers this test writes itself: decoded chains have
// the ideal geometry and the codebook's torsions, encode inverts decode exactly and ignores rigid
// motions, the beam search gives the same tokens however it is split over threads, and bad input
// throws std::invalid_argument.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "fixtures.hpp"
#include "mdllm/geometry.hpp"
#include "mdllm/tokenizer.hpp"
#include "mdllm/torsion_tokenizer.hpp"

namespace fs = std::filesystem;

namespace {

constexpr double kPi = 3.14159265358979323846;
const double kDeg = kPi / 180.0;
const std::vector<float> kGeometry = {1.458f, 1.525f, 1.329f, 1.231f, float(111.2 * kDeg), float(116.2 * kDeg),
                                      float(121.7 * kDeg), float(120.5 * kDeg)};

std::string config(int64_t k, int beam) {
  return "{\"kind\": \"torsion\", \"codebook_size\": " + std::to_string(k) + ", \"beam_width\": " +
         std::to_string(beam) + ", \"version\": 1, \"_note\": \"test\"}";
}

// A tokenizer directory with this codebook (K, 3) and the standard geometry.
std::string write_tokenizer(const fs::path& dir, const std::vector<float>& codebook, int beam) {
  fs::create_directories(dir);
  const int64_t k = static_cast<int64_t>(codebook.size() / 3);
  write_safetensors((dir / "model.safetensors").string(),
                    {f32("codebook", {k, 3}, codebook), f32("geometry", {8}, kGeometry)});
  std::ofstream(dir / "config.json") << config(k, beam);
  return dir.string();
}

template <class Fn>
bool throws_invalid(Fn&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

struct D3 {
  double x, y, z;
};
D3 atom(const std::vector<float>& xyz, int64_t res, int a) {  // Angstrom
  const float* p = &xyz[(res * 4 + a) * 3];
  return {p[0] * 10.0, p[1] * 10.0, p[2] * 10.0};
}
D3 sub(D3 a, D3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
double dot(D3 a, D3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
D3 cross(D3 a, D3 b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
double dist(D3 a, D3 b) { return std::sqrt(dot(sub(a, b), sub(a, b))); }
double dihedral(D3 a, D3 b, D3 c, D3 d) {
  const D3 b1 = sub(b, a), b2 = sub(c, b), b3 = sub(d, c);
  const D3 n1 = cross(b1, b2), n2 = cross(b2, b3);
  return std::atan2(std::sqrt(dot(b2, b2)) * dot(b1, n2), dot(n1, n2));
}
double angle_diff(double a, double b) { return std::fabs(std::remainder(a - b, 2 * kPi)); }

}  // namespace

int main() {
  const fs::path root = fs::temp_directory_path() / ("mdllm_torsion_test_" + std::to_string(std::random_device{}()));
  mdllm::set_num_threads(2);

  // six well-separated codes (omega, phi, psi): helix, strand, PPII, left helix, a cis peptide, other
  const std::vector<float> codebook = {
      float(180 * kDeg),  float(-60 * kDeg),  float(-45 * kDeg), float(178 * kDeg),  float(-120 * kDeg), float(130 * kDeg),
      float(-179 * kDeg), float(-75 * kDeg),  float(145 * kDeg), float(175 * kDeg),  float(60 * kDeg),   float(45 * kDeg),
      float(5 * kDeg),    float(-80 * kDeg),  float(160 * kDeg), float(-170 * kDeg), float(-150 * kDeg), float(-30 * kDeg)};
  const int64_t K = 6;
  const std::string dir = write_tokenizer(root / "small", codebook, 4);
  const mdllm::TorsionTokenizer tok = mdllm::TorsionTokenizer::from_directory(dir);
  CHECK(tok.codebook_size() == K);
  CHECK(tok.beam_width() == 4);

  std::mt19937 rng(7);
  const int64_t L = 40;
  std::vector<int32_t> tokens(L);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % K);
  std::vector<float> xyz(L * 12);
  tok.decode(tokens.data(), 1, L, xyz.data());

  {  // decode: canonical start, ideal bonds and angles, the codebook's torsions
    CHECK(xyz[0] == 0 && xyz[1] == 0 && xyz[2] == 0 && xyz[4] == 0 && xyz[5] == 0 && xyz[8] == 0);
    double worst_bond = 0, worst_angle = 0, worst_torsion = 0;
    for (int64_t i = 0; i < L; ++i) {
      const D3 n = atom(xyz, i, 0), ca = atom(xyz, i, 1), c = atom(xyz, i, 2), o = atom(xyz, i, 3);
      const float* code = &codebook[tokens[i] * 3];
      worst_bond = std::max({worst_bond, std::fabs(dist(n, ca) - kGeometry[0]), std::fabs(dist(ca, c) - kGeometry[1]),
                             std::fabs(dist(c, o) - kGeometry[3])});
      auto ang = [](D3 a, D3 b, D3 c) { return std::acos(dot(sub(a, b), sub(c, b)) / dist(a, b) / dist(c, b)); };
      worst_angle = std::max({worst_angle, std::fabs(ang(n, ca, c) - kGeometry[4]), std::fabs(ang(ca, c, o) - kGeometry[7])});
      if (i + 1 < L) {
        const D3 n1 = atom(xyz, i + 1, 0);
        worst_bond = std::max(worst_bond, std::fabs(dist(c, n1) - kGeometry[2]));
        worst_angle = std::max(worst_angle, std::fabs(ang(ca, c, n1) - kGeometry[5]));
        worst_torsion = std::max(worst_torsion, angle_diff(dihedral(n, ca, c, n1), code[2]));  // psi
      }
      worst_torsion = std::max(worst_torsion, angle_diff(dihedral(n, ca, c, o), code[2] + kPi));  // O at psi + pi
      if (i > 0) {
        const D3 ca0 = atom(xyz, i - 1, 1), c0 = atom(xyz, i - 1, 2);
        worst_angle = std::max(worst_angle, std::fabs(ang(c0, n, ca) - kGeometry[6]));
        worst_torsion = std::max({worst_torsion, angle_diff(dihedral(ca0, c0, n, ca), code[0]),  // omega
                                  angle_diff(dihedral(c0, n, ca, c), code[1])});              // phi
      }
    }
    std::printf("decode: worst bond error %.2e A, angle %.2e rad, torsion %.2e rad\n", worst_bond, worst_angle,
                worst_torsion);
    CHECK(worst_bond < 1e-4);
    CHECK(worst_angle < 1e-4);
    CHECK(worst_torsion < 1e-4);
  }

  {  // encode inverts decode, one frame (candidates split over threads) and several (frames split)
    std::vector<int32_t> again(L, -1);
    tok.encode(xyz.data(), 1, L, again.data());
    CHECK(again == tokens);
    const int64_t F = 3;
    std::vector<int32_t> many(F * L);
    for (auto& t : many) t = static_cast<int32_t>(rng() % K);
    std::vector<float> many_xyz(F * L * 12);
    tok.decode(many.data(), F, L, many_xyz.data());
    std::vector<int32_t> many_again(F * L, -1);
    tok.encode(many_xyz.data(), F, L, many_again.data());
    CHECK(many_again == many);
    for (int64_t len : {1, 2}) {  // the shortest chains
      std::vector<float> x(len * 12);
      std::vector<int32_t> t(len, 3), back(len, -1);
      tok.decode(t.data(), 1, len, x.data());
      tok.encode(x.data(), 1, len, back.data());
      CHECK(back == t);
    }
  }

  {  // encode ignores a rigid rotation and translation of the input
    const std::vector<float> moved = rigid_motion(xyz);
    std::vector<int32_t> again(L, -1);
    tok.encode(moved.data(), 1, L, again.data());
    CHECK(again == tokens);
  }

  {  // a large codebook on a noisy chain: the same tokens whether one frame's candidates are split
     // over threads or whole frames are, and with one thread; a wider beam never costs more
    std::vector<float> big(1024 * 3);
    std::uniform_real_distribution<float> uni(-3.14159f, 3.14159f);
    for (auto& v : big) v = uni(rng);
    const mdllm::TorsionTokenizer wide = mdllm::TorsionTokenizer::from_directory(write_tokenizer(root / "big", big, 4));
    const int64_t n = 60;
    std::vector<int32_t> t(n);
    for (auto& v : t) v = static_cast<int32_t>(rng() % 1024);
    std::vector<float> x(2 * n * 12);
    wide.decode(t.data(), 1, n, x.data());
    std::normal_distribution<float> noise(0.0f, 0.02f);  // 0.2 A: no longer exactly representable
    for (int64_t i = 0; i < n * 12; ++i) x[i] += noise(rng);
    std::copy(x.begin(), x.begin() + n * 12, x.begin() + n * 12);
    std::vector<int32_t> one(n), two(2 * n), serial(n);
    wide.encode(x.data(), 1, n, one.data());
    wide.encode(x.data(), 2, n, two.data());
    mdllm::set_num_threads(1);
    wide.encode(x.data(), 1, n, serial.data());
    mdllm::set_num_threads(2);
    CHECK(std::equal(one.begin(), one.end(), two.begin()));
    CHECK(std::equal(one.begin(), one.end(), two.begin() + n));
    CHECK(one == serial);
  }

  {  // bad input
    std::vector<int32_t> t(5, 0);
    std::vector<float> x(5 * 12);
    t[2] = static_cast<int32_t>(K);
    CHECK(throws_invalid([&] { tok.decode(t.data(), 1, 5, x.data()); }));
    t[2] = -1;
    CHECK(throws_invalid([&] { tok.decode(t.data(), 1, 5, x.data()); }));
    CHECK(throws_invalid([&] { tok.decode(t.data(), 1, 0, x.data()); }));
    std::vector<float> good(xyz.begin(), xyz.begin() + 5 * 12);
    std::vector<int32_t> out(5);
    good[17] = NAN;
    CHECK(throws_invalid([&] { tok.encode(good.data(), 1, 5, out.data()); }));
    std::vector<float> zeros(5 * 12, 0.0f);  // N, CA, C of residue 0 coincide
    CHECK(throws_invalid([&] { tok.encode(zeros.data(), 1, 5, out.data()); }));
  }

  {  // bad files and configs
    const fs::path d = root / "bad";
    fs::create_directories(d);
    const std::string w = (d / "model.safetensors").string();
    const auto attempt = [&](const std::vector<Entry>& entries, const std::string& cfg) {
      write_safetensors(w, entries);
      return throws_invalid([&] { mdllm::TorsionTokenizer(w, cfg); });
    };
    const Entry cb = f32("codebook", {K, 3}, codebook), geo = f32("geometry", {8}, kGeometry);
    CHECK(!attempt({cb, geo}, config(K, 4)));                                          // the good one loads
    CHECK(attempt({cb}, config(K, 4)));                                                // missing tensor
    CHECK(attempt({f32("codebook", {K * 3 / 2, 2}, codebook), geo}, config(K, 4)));    // wrong shape
    CHECK(attempt({f32("codebook", {K * 3}, codebook), geo}, config(K, 4)));           // wrong rank
    CHECK(attempt({cb, f32("geometry", {7}, std::vector<float>(7, 1.0f))}, config(K, 4)));
    CHECK(attempt({cb, geo}, config(K + 2, 4)));                                       // K mismatch
    Entry half = cb;
    half.dtype = "F16";
    half.bytes.resize(cb.bytes.size() / 2);
    CHECK(attempt({half, geo}, config(K, 4)));                                         // wrong dtype
    std::vector<float> nan_cb = codebook;
    nan_cb[4] = NAN;
    CHECK(attempt({f32("codebook", {K, 3}, nan_cb), geo}, config(K, 4)));              // non-finite value
    for (const std::string cfg :
         {std::string("not json"), std::string("[1]"), config(K, 0), config(K, 65), config(1, 4),
          std::string("{\"kind\": \"transformer\", \"codebook_size\": 6, \"beam_width\": 4, \"version\": 1}"),
          std::string("{\"codebook_size\": 6, \"beam_width\": 4, \"version\": 1}"),
          std::string("{\"kind\": \"torsion\", \"codebook_size\": 6, \"beam_width\": 4}"),
          std::string("{\"kind\": \"torsion\", \"codebook_size\": 6, \"beam_width\": 4, \"version\": 2}"),
          std::string("{\"kind\": \"torsion\", \"codebook_size\": 6.5, \"beam_width\": 4, \"version\": 1}"),
          std::string("{\"kind\": \"torsion\", \"codebook_size\": 6, \"beam_width\": 4, \"version\": 1, \"levels\": [6]}")})
      CHECK(attempt({cb, geo}, cfg));
    CHECK(throws_invalid([&] { mdllm::TorsionTokenizer((d / "missing.safetensors").string(), config(K, 4)); }));
  }

  {  // load_tokenizer dispatches on "kind"; the retired transformer kind and unknown kinds throw
    const std::unique_ptr<mdllm::StructureTokenizer> loaded = mdllm::load_tokenizer(dir);
    CHECK(dynamic_cast<const mdllm::TorsionTokenizer*>(loaded.get()) != nullptr);
    CHECK(loaded->codebook_size() == K);
    std::vector<float> x(L * 12);
    loaded->decode(tokens.data(), 1, L, x.data());
    CHECK(x == xyz);
    int n = 0;
    for (const char* text : {"{\"kind\": \"mystery\"}", "{\"kind\": \"transformer\", \"levels\": [4, 2]}",
                             "{\"levels\": [4, 2]}", "{\"kind\": \"motion\", \"codebook_size\": 6, \"version\": 1}"}) {
      const fs::path d = root / ("other" + std::to_string(n++));
      fs::create_directories(d);
      fs::copy_file(fs::path(dir) / "model.safetensors", d / "model.safetensors");
      std::ofstream(d / "config.json") << text;
      CHECK(throws_invalid([&] { mdllm::load_tokenizer(d.string()); }));
    }
    std::string message;
    try {  // an old directory of the retired kind (its config had no "kind" key) says so
      mdllm::load_tokenizer((root / "other2").string());
    } catch (const std::invalid_argument& e) {
      message = e.what();
    }
    CHECK(message.find("transformer tokenizer kind was retired") != std::string::npos);
  }

  fs::remove_all(root);
  if (failures) std::printf("%d checks failed\n", failures);
  else std::printf("all torsion tokenizer checks passed\n");
  return failures ? 1 : 0;
}
