// What the fuzz drivers share: a failure counter, "must throw std::invalid_argument" checks, file reads.
#pragma once

#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

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

}  // namespace fuzz
