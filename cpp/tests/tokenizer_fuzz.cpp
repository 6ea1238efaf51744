// Fuzz driver for the tokenizer and the safetensors reader, meant for a sanitizer build:
//
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -Icpp/include cpp/src/core/*.cpp cpp/tests/tokenizer_fuzz.cpp -o /tmp/tokenizer_fuzz -pthread
//   /tmp/tokenizer_fuzz models/foldtoken-transformer [iterations]
//
// Random valid tokens must decode to finite coordinates (and re-encode); out-of-range tokens, NaN
// coordinates, corrupted weight files and broken configs must throw std::invalid_argument, never crash.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "mdllm/safetensors.hpp"
#include "mdllm/tokenizer.hpp"

using fuzz::check;
using fuzz::expect_invalid;
using fuzz::slurp;
using fuzz::tolerate_invalid;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s TOKENIZER_DIR [iterations]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int iterations = argc > 2 ? std::stoi(argv[2]) : 200;
  const mdllm::Tokenizer tok = mdllm::Tokenizer::from_directory(dir);
  const int64_t k = tok.codebook_size();
  std::mt19937_64 rng(1234);

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
    for (int32_t t : again) in_range = in_range && t >= 0 && t < k;
    check(in_range, "re-encoded tokens are in range");
  }
  fuzz::bad_inputs_throw(tok, iterations, rng);
  const std::string weights = slurp(dir + "/model.safetensors");
  const std::string config = slurp(dir + "/config.json");
  for (int it = 0; it < iterations; ++it) {  // corrupted weight files: an error or a model, never a crash
    const std::string bytes = fuzz::corrupt_bytes(weights, it, 20000, rng);
    tolerate_invalid([&] { mdllm::parse_safetensors(std::vector<uint8_t>(bytes.begin(), bytes.end()), "fuzz"); });
  }
  for (int it = 0; it < iterations; ++it)  // corrupted configs
    tolerate_invalid([&] { mdllm::TokenizerConfig::from_json(fuzz::corrupt_text(config, rng)); });
  std::printf("tokenizer fuzz: %d iterations, %d failures\n", iterations, fuzz::failures);
  return fuzz::failures ? 1 : 0;
}
