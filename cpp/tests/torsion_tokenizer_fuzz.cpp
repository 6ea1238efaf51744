// Fuzz driver for the torsion-codebook tokenizer, meant for a sanitizer build. ctest runs it briefly
// (tests/cpp/CMakeLists.txt); under the sanitizers:
//
//   cmake -S . -B build/cpp-asan -G Ninja -DMDLLM_SANITIZE=ON && cmake --build build/cpp-asan && ctest --test-dir build/cpp-asan -R fuzz
//
// or by hand:
//
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -Icpp/include cpp/src/core/*.cpp cpp/tests/torsion_tokenizer_fuzz.cpp -o /tmp/torsion_fuzz -pthread
//   /tmp/torsion_fuzz TORSION_TOKENIZER_DIR [iterations]
//
// Random valid tokens must decode to finite coordinates and re-encode to in-range tokens (almost
// always the same ones); random and near-degenerate coordinates must encode without crashing;
// out-of-range tokens, NaN coordinates, corrupted weight files and broken configs must throw
// std::invalid_argument, never crash.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "mdllm/torsion_tokenizer.hpp"

using fuzz::check;
using fuzz::expect_invalid;
using fuzz::slurp;
using fuzz::tolerate_invalid;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s TORSION_TOKENIZER_DIR [iterations]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int iterations = argc > 2 ? std::stoi(argv[2]) : 200;
  const mdllm::TorsionTokenizer tok = mdllm::TorsionTokenizer::from_directory(dir);
  const int64_t k = tok.codebook_size();
  std::mt19937_64 rng(1234);
  int64_t residues = 0, changed = 0;

  for (int it = 0; it < iterations / 10 + 1; ++it) {  // valid random tokens
    const int64_t frames = 1 + rng() % 3, length = 1 + rng() % 120;
    std::vector<int32_t> tokens(frames * length);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % k);
    std::vector<float> xyz(frames * length * 12);
    tok.decode(tokens.data(), frames, length, xyz.data());
    bool finite = true;
    for (float v : xyz) finite = finite && std::isfinite(v);
    check(finite, "decoded coordinates are finite");
    std::vector<int32_t> again(frames * length);
    tok.encode(xyz.data(), frames, length, again.data());
    bool in_range = true;
    for (size_t i = 0; i < again.size(); ++i) {
      in_range = in_range && again[i] >= 0 && again[i] < k;
      changed += again[i] != tokens[i];
    }
    residues += frames * length;
    check(in_range, "re-encoded tokens are in range");
  }
  for (int it = 0; it < iterations / 10 + 1; ++it) {  // arbitrary finite coordinates, some nearly degenerate
    const int64_t length = 1 + rng() % 40;
    std::uniform_real_distribution<float> uni(-5.0f, 5.0f);
    std::vector<float> xyz(length * 12);
    for (auto& v : xyz) v = uni(rng);
    if (it % 3 == 1) for (int a = 3; a < 9; ++a) xyz[a] = xyz[a % 3] + 1e-7f * uni(rng);  // N, CA, C coincide
    if (it % 3 == 2) for (size_t a = 12; a < xyz.size(); ++a) xyz[a] = xyz[a % 12];      // stacked residues
    std::vector<int32_t> out(length, -1);
    tolerate_invalid([&] {
      tok.encode(xyz.data(), 1, length, out.data());
      bool in_range = true;
      for (int32_t t : out) in_range = in_range && t >= 0 && t < k;
      check(in_range, "tokens of arbitrary coordinates are in range");
    });
  }
  fuzz::bad_inputs_throw(tok, iterations, rng);
  const std::string weights = slurp(dir + "/model.safetensors");
  const std::string config = slurp(dir + "/config.json");
  const std::string scratch = "/tmp/torsion_fuzz_" + std::to_string(std::random_device{}()) + ".safetensors";
  for (int it = 0; it < iterations; ++it) {  // corrupted weight files: an error or a tokenizer, never a crash
    std::ofstream(scratch, std::ios::binary) << fuzz::corrupt_bytes(weights, it, 400, rng);
    tolerate_invalid([&] { mdllm::TorsionTokenizer(scratch, config); });
  }
  std::remove(scratch.c_str());
  for (int it = 0; it < iterations; ++it)  // corrupted configs
    tolerate_invalid([&] { mdllm::TorsionTokenizer(dir + "/model.safetensors", fuzz::corrupt_text(config, rng)); });
  std::printf("torsion tokenizer fuzz: %d iterations, %d failures; re-encoding changed %lld of %lld tokens\n",
              iterations, fuzz::failures, static_cast<long long>(changed), static_cast<long long>(residues));
  return fuzz::failures ? 1 : 0;
}
