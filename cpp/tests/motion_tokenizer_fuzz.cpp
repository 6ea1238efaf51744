// Fuzz driver for the motion tokenizer, meant for a sanitizer build. ctest runs it briefly
// (tests/cpp/CMakeLists.txt); under the sanitizers:
//
//   cmake -S . -B build/cpp-asan -G Ninja -DMDLLM_SANITIZE=ON && cmake --build build/cpp-asan && ctest --test-dir build/cpp-asan -R fuzz
//
// or by hand:
//
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -Icpp/include cpp/src/core/*.cpp cpp/tests/motion_tokenizer_fuzz.cpp -o /tmp/motion_fuzz -pthread
//   /tmp/motion_fuzz [MOTION_TOKENIZER_DIR|-] [iterations]
//
// Without a directory (or with "-") it writes a random K = 300 codebook of its own. Random valid
// tokens on random keys must decode to finite coordinates and re-encode to in-range tokens (almost
// always the same ones); arbitrary, huge and degenerate frames must encode to in-range tokens; random
// and near-degenerate keys must encode or throw std::invalid_argument; out-of-range tokens, NaN
// frames or keys, bad sizes, corrupted weight files and broken configs must throw
// std::invalid_argument, never crash.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "mdllm/geometry.hpp"
#include "mdllm/motion_tokenizer.hpp"

using fuzz::check;
using fuzz::expect_invalid;
using fuzz::slurp;
using fuzz::tolerate_invalid;

namespace {

// A motion tokenizer directory with K random codes (nm), written by hand as safetensors.
std::string write_random_tokenizer(const std::string& dir, int64_t k, std::mt19937_64& rng) {
  std::filesystem::create_directories(dir);
  std::normal_distribution<float> g(0.0f, 0.05f);
  std::vector<float> cb(k * 12);
  for (auto& v : cb) v = g(rng);
  const std::string header = "{\"codebook\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(k) +
                             ",12],\"data_offsets\":[0," + std::to_string(cb.size() * 4) + "]}}";
  std::ofstream out(dir + "/model.safetensors", std::ios::binary);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xFF));
  out << header;
  out.write(reinterpret_cast<const char*>(cb.data()), static_cast<std::streamsize>(cb.size() * 4));
  std::ofstream(dir + "/config.json") << "{\"kind\": \"motion\", \"codebook_size\": " << k
                                      << ", \"version\": 1, \"_note\": \"fuzz\"}";
  return dir;
}

// A random backbone-like key of L residues (nm): CA on a random walk, N, C, O at bond distance.
std::vector<float> random_key(int64_t n_res, std::mt19937_64& rng) {
  std::normal_distribution<double> g(0.0, 1.0);
  auto step = [&](double len, double* v) {
    double s[3] = {g(rng), g(rng), g(rng)};
    const double l = std::sqrt(s[0] * s[0] + s[1] * s[1] + s[2] * s[2]) + 1e-12;
    for (int d = 0; d < 3; ++d) v[d] = s[d] * len / l;
  };
  std::vector<float> key(n_res * 12);
  double ca[3] = {0, 0, 0}, n[3], c[3], o[3], walk[3];
  for (int64_t i = 0; i < n_res; ++i) {
    step(0.38, walk);
    for (int d = 0; d < 3; ++d) ca[d] += walk[d];
    step(0.146, n);
    step(0.152, c);
    step(0.123, o);
    for (int d = 0; d < 3; ++d) {
      key[i * 12 + d] = static_cast<float>(ca[d] + n[d]);
      key[i * 12 + 3 + d] = static_cast<float>(ca[d]);
      key[i * 12 + 6 + d] = static_cast<float>(ca[d] + c[d]);
      key[i * 12 + 9 + d] = static_cast<float>(ca[d] + c[d] + o[d]);
    }
  }
  return key;
}

bool all_in_range(const std::vector<int32_t>& t, int64_t k) {
  for (int32_t v : t)
    if (v < 0 || v >= k) return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::mt19937_64 rng(1234);
  const std::string scratch_dir =
      (std::filesystem::temp_directory_path() / ("motion_fuzz_" + std::to_string(std::random_device{}()))).string();
  const bool own = argc < 2 || std::string(argv[1]) == "-";
  const std::string dir = own ? write_random_tokenizer(scratch_dir, 300, rng) : argv[1];
  const int iterations = argc > 2 ? std::stoi(argv[2]) : 200;
  const mdllm::MotionTokenizer tok = mdllm::MotionTokenizer::from_directory(dir);
  const int64_t k = tok.codebook_size();
  int64_t residues = 0, changed = 0;

  for (int it = 0; it < iterations / 10 + 1; ++it) {  // valid random tokens on random keys
    mdllm::set_num_threads(1 + static_cast<int>(rng() % 3));
    const int64_t frames = rng() % 4, length = 1 + rng() % 120;
    const std::vector<float> key = random_key(length, rng);
    std::vector<int32_t> tokens(frames * length);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % k);
    std::vector<float> xyz(frames * length * 12);
    try {
      tok.decode(tokens.data(), frames, length, key.data(), xyz.data());
    } catch (const std::invalid_argument&) {
      continue;  // a random key can (very rarely) have a degenerate residue
    }
    bool finite = true;
    for (float v : xyz) finite = finite && std::isfinite(v);
    check(finite, "decoded coordinates are finite");
    std::vector<int32_t> again(frames * length, -1);
    tok.encode(xyz.data(), frames, length, key.data(), again.data());
    check(all_in_range(again, k), "re-encoded tokens are in range");
    for (size_t i = 0; i < again.size(); ++i) changed += again[i] != tokens[i];
    residues += frames * length;
  }
  mdllm::set_num_threads(2);

  std::uniform_real_distribution<float> uni(-5.0f, 5.0f);
  for (int it = 0; it < iterations / 10 + 1; ++it) {  // arbitrary finite frames on a valid key
    const int64_t frames = 1 + rng() % 3, length = 1 + rng() % 40;
    const std::vector<float> key = random_key(length, rng);
    std::vector<float> xyz(frames * length * 12);
    for (auto& v : xyz) v = uni(rng);
    if (it % 4 == 1)
      for (size_t a = 0; a < xyz.size(); ++a) xyz[a] = xyz[a % 12];  // every residue on one spot
    if (it % 4 == 2)
      for (auto& v : xyz) v *= 1e37f;  // huge but finite
    if (it % 4 == 3)
      for (size_t a = 0; a < xyz.size(); ++a) xyz[a] = 1e-7f * uni(rng);  // all atoms nearly coincide
    std::vector<int32_t> out(frames * length, -1);
    tolerate_invalid([&] {
      tok.encode(xyz.data(), frames, length, key.data(), out.data());
      check(all_in_range(out, k), "tokens of arbitrary frames are in range");
    });
  }

  for (int it = 0; it < iterations / 5 + 1; ++it) {  // arbitrary and near-degenerate keys: tokens or an error
    const int64_t length = 1 + rng() % 30;
    std::vector<float> key(length * 12);
    for (auto& v : key) v = uni(rng);
    const int64_t r = rng() % length;
    if (it % 3 == 1)
      for (int d = 0; d < 3; ++d) key[r * 12 + 6 + d] = key[r * 12 + 3 + d] + 1e-7f * uni(rng);  // C on CA
    if (it % 3 == 2)
      for (int d = 0; d < 3; ++d)  // N on the CA-C line, up to rounding
        key[r * 12 + d] = key[r * 12 + 3 + d] + 0.5f * (key[r * 12 + 6 + d] - key[r * 12 + 3 + d]);
    std::vector<float> xyz(key);
    std::vector<int32_t> out(length, -1), tokens(length);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % k);
    tolerate_invalid([&] {
      tok.encode(xyz.data(), 1, length, key.data(), out.data());
      check(all_in_range(out, k), "tokens on an arbitrary key are in range");
    });
    tolerate_invalid([&] {
      tok.decode(tokens.data(), 1, length, key.data(), xyz.data());
      bool finite = true;
      for (float v : xyz) finite = finite && std::isfinite(v);
      check(finite, "decoded on an arbitrary key: finite");
    });
  }

  // bad inputs: out-of-range tokens, NaN or infinite frames and keys, bad sizes
  const std::vector<float> key7 = random_key(7, rng);
  for (int it = 0; it < iterations; ++it) {
    std::vector<int32_t> tokens(14, 0);
    tokens[rng() % 14] =
        (rng() % 2) ? static_cast<int32_t>(k + rng() % 100000) : -static_cast<int32_t>(1 + rng() % 100000);
    std::vector<float> xyz(14 * 12, -3.0f);
    expect_invalid([&] { tok.decode(tokens.data(), 2, 7, key7.data(), xyz.data()); }, "out-of-range token throws");
    check(xyz[0] == -3.0f, "nothing decoded before the error");
    std::vector<float> frames(14 * 12);
    for (auto& v : frames) v = uni(rng);
    frames[rng() % frames.size()] = (rng() % 2) ? NAN : -INFINITY;
    std::vector<int32_t> out(14, -1);
    expect_invalid([&] { tok.encode(frames.data(), 2, 7, key7.data(), out.data()); }, "NaN frames throw");
    check(out[0] == -1, "nothing encoded before the error");
    std::vector<float> bad_key = key7;
    bad_key[rng() % bad_key.size()] = (rng() % 2) ? NAN : INFINITY;
    expect_invalid([&] { tok.encode(xyz.data(), 1, 7, bad_key.data(), out.data()); }, "NaN key throws (encode)");
    const std::vector<int32_t> zeros(7, 0);
    expect_invalid([&] { tok.decode(zeros.data(), 1, 7, bad_key.data(), xyz.data()); }, "NaN key throws (decode)");
  }
  {
    std::vector<int32_t> out(7, 0);
    std::vector<float> xyz(7 * 12);
    expect_invalid([&] { tok.encode(xyz.data(), 1, 0, key7.data(), out.data()); }, "zero residues throw");
    expect_invalid([&] { tok.encode(xyz.data(), -2, 7, key7.data(), out.data()); }, "negative frames throw");
    expect_invalid([&] { tok.decode(out.data(), 1, 0, key7.data(), xyz.data()); }, "zero residues throw");
    expect_invalid([&] { tok.decode(out.data(), -2, 7, key7.data(), xyz.data()); }, "negative frames throw");
  }

  const std::string weights = slurp(dir + "/model.safetensors");
  const std::string config = slurp(dir + "/config.json");
  const std::string scratch = "/tmp/motion_fuzz_" + std::to_string(std::random_device{}()) + ".safetensors";
  for (int it = 0; it < iterations; ++it) {  // corrupted weight files: an error or a tokenizer, never a crash
    std::ofstream(scratch, std::ios::binary) << fuzz::corrupt_bytes(weights, it, 200, rng);
    tolerate_invalid([&] {
      const mdllm::MotionTokenizer t(scratch, config);
      std::vector<int32_t> tokens(7, 0);
      std::vector<float> xyz(7 * 12);
      t.decode(tokens.data(), 1, 7, key7.data(), xyz.data());
      t.encode(xyz.data(), 1, 7, key7.data(), tokens.data());
      check(all_in_range(tokens, t.codebook_size()), "a corrupted file that loads gives in-range tokens");
    });
  }
  std::remove(scratch.c_str());
  for (int it = 0; it < iterations; ++it)  // corrupted configs
    tolerate_invalid([&] { mdllm::MotionTokenizer(dir + "/model.safetensors", fuzz::corrupt_text(config, rng)); });
  if (own) std::filesystem::remove_all(scratch_dir);
  std::printf("motion tokenizer fuzz: %d iterations, %d failures; re-encoding changed %lld of %lld tokens\n",
              iterations, fuzz::failures, static_cast<long long>(changed), static_cast<long long>(residues));
  return fuzz::failures ? 1 : 0;
}
