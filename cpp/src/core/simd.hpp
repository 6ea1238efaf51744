// Portable 16-wide float vectors (GCC/Clang vector extensions) for the tokenizer's kernels; private.
// They compile to one AVX-512 register where the build targets it, and to narrower ones elsewhere.
#pragma once

#include <cstdint>
#include <cstring>

namespace mdllm::detail {

typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store16(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }
inline f32x16 splat(float s) { return f32x16{} + s; }

// exp(x) to about 1 ulp on [-87, 88]; below that it flushes to tiny, above it saturates.
// x = n ln2 + r with |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial, 2^n by exponent bits.
inline f32x16 exp16(f32x16 x) {
  x = x < splat(-87.0f) ? splat(-87.0f) : x;
  x = x > splat(88.0f) ? splat(88.0f) : x;
  const f32x16 shifter = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const f32x16 t = x * splat(1.44269504f) + shifter;
  const f32x16 n = t - shifter;
  f32x16 r = x - n * splat(0.693145752f);  // ln 2 split in two for an exact reduction
  r = r - n * splat(1.42860677e-6f);
  f32x16 p = splat(1.0f / 5040);
  p = p * r + splat(1.0f / 720);
  p = p * r + splat(1.0f / 120);
  p = p * r + splat(1.0f / 24);
  p = p * r + splat(1.0f / 6);
  p = p * r + splat(0.5f);
  p = p * r + splat(1.0f);
  p = p * r + splat(1.0f);
  i32x16 bits;
  std::memcpy(&bits, &t, sizeof bits);
  const i32x16 shifter_bits = (i32x16{} + 0x4B400000);
  bits = ((bits - shifter_bits) + 127) << 23;  // n + bias in the exponent field
  f32x16 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// Applies f16 (a function of one f32x16) to x[0..n) in place; the tail goes through a padded copy.
template <class F>
inline void map16(float* x, int64_t n, F f16) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store16(x + i, f16(load16(x + i)));
  if (i < n) {
    float tail[kLanes] = {};
    std::memcpy(tail, x + i, (n - i) * sizeof(float));
    store16(tail, f16(load16(tail)));
    std::memcpy(x + i, tail, (n - i) * sizeof(float));
  }
}

}  // namespace mdllm::detail
