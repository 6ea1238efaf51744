// What the fuzz drivers share: a failure counter, "must throw std::invalid_argument" checks, file
// reads, the bad-input checks every tokenizer must pass and the ways files get corrupted.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace fuzz {

inline int failures = 0;

inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

// fn must throw std::invalid_argument.
template <class Fn>
void expect_invalid(Fn&& fn, const char* what) {
  try {
    fn();
    check(false, what);
  } catch (const std::invalid_argument&) {
  }
}

// Runs fn; std::invalid_argument is an acceptable outcome, anything else propagates.
template <class Fn>
void tolerate_invalid(Fn&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument&) {
  }
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Out-of-range tokens and NaN coordinates must throw std::invalid_argument from any tokenizer kind.
template <class Tokenizer>
void bad_inputs_throw(const Tokenizer& tok, int iterations, std::mt19937_64& rng) {
  const int64_t k = tok.codebook_size();
  for (int it = 0; it < iterations; ++it) {
    std::vector<int32_t> tokens(7, 0);
    tokens[rng() % 7] = (rng() % 2) ? static_cast<int32_t>(k + rng() % 100000) : -static_cast<int32_t>(1 + rng() % 100000);
    std::vector<float> xyz(7 * 12);
    expect_invalid([&] { tok.decode(tokens.data(), 1, 7, xyz.data()); }, "out-of-range token throws");
  }
  std::vector<float> xyz(5 * 12, 0.1f);
  xyz[17] = NAN;
  std::vector<int32_t> out(5);
  expect_invalid([&] { tok.encode(xyz.data(), 1, 5, out.data()); }, "NaN coordinates throw");
}

// A weights file damaged the it-th way (cycling): truncated, bytes of its first `span` flipped, or noise.
inline std::string corrupt_bytes(std::string bytes, int it, size_t span, std::mt19937_64& rng) {
  const int mode = it % 3;
  if (mode == 0) bytes.resize(rng() % (bytes.size() + 1));
  const size_t header_end = std::min<size_t>(bytes.size(), 8 + span);
  for (int m = 0; m < 1 + static_cast<int>(rng() % 6) && header_end > 0; ++m)
    bytes[rng() % header_end] = static_cast<char>(rng());
  if (mode == 2) {
    bytes.resize(rng() % 64);
    for (auto& b : bytes) b = static_cast<char>(rng());
  }
  return bytes;
}

// A config text with a few characters replaced by random printable ones.
inline std::string corrupt_text(std::string text, std::mt19937_64& rng) {
  for (int m = 0; m < 1 + static_cast<int>(rng() % 4); ++m) text[rng() % text.size()] = static_cast<char>(32 + rng() % 95);
  return text;
}

}  // namespace fuzz
