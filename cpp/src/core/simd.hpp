// Portable 16-wide float vectors (GCC/Clang vector extensions) for the tokenizer's kernels; private.
// They compile to one AVX-512 register where the build targets it, and to narrower ones elsewhere.
// Everything that takes or returns a vector is forced inline: a vector passed between functions
// compiled for different instruction sets (multi-versioned kernels) would not match their ABIs.
#pragma once

#include <cstdint>
#include <cstring>

#define MDLLM_SIMD inline __attribute__((always_inline))

namespace mdllm::detail {

typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

MDLLM_SIMD f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
MDLLM_SIMD void store16(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }
MDLLM_SIMD f32x16 splat(float s) { return f32x16{} + s; }

// exp(x) to about 1 ulp on [-87, 88]; below that it flushes to tiny, above it saturates.
// x = n ln2 + r with |r| <= ln2/2; exp(r) = 1 + r + r^2 P(r) with the degree-5 minimax P of the
// Cephes library's expf; 2^n goes straight into the exponent bits.
MDLLM_SIMD f32x16 exp16(f32x16 x) {
  x = x < splat(-87.0f) ? splat(-87.0f) : x;
  x = x > splat(88.0f) ? splat(88.0f) : x;
  const f32x16 shifter = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const f32x16 t = x * splat(1.44269504f) + shifter;
  const f32x16 n = t - shifter;
  f32x16 r = x - n * splat(0.693359375f);  // ln 2 in two parts, the first exact in few bits
  r = r + n * splat(2.12194440e-4f);
  f32x16 p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * (r * r) + r + splat(1.0f);
  i32x16 bits;
  std::memcpy(&bits, &t, sizeof bits);
  bits = ((bits - 0x4B400000) + 127) << 23;  // n (the low bits of t) + bias, in the exponent field
  f32x16 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// Applies op (a functor whose operator() on one f32x16 is MDLLM_SIMD) to x[0..n) in place; the tail
// goes through a padded copy.
template <class Op>
MDLLM_SIMD void map16(float* x, int64_t n, Op op) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store16(x + i, op(load16(x + i)));
  if (i < n) {
    float tail[kLanes] = {};
    std::memcpy(tail, x + i, (n - i) * sizeof(float));
    store16(tail, op(load16(tail)));
    std::memcpy(x + i, tail, (n - i) * sizeof(float));
  }
}

MDLLM_SIMD float sum16(f32x16 v) {
  float s = 0.0f;
  for (int64_t i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

struct Exp {
  MDLLM_SIMD f32x16 operator()(f32x16 v) const { return exp16(v); }
};
struct ExpShifted {  // exp(v - shift)
  float shift;
  MDLLM_SIMD f32x16 operator()(f32x16 v) const { return exp16(v - shift); }
};
struct Silu {
  MDLLM_SIMD f32x16 operator()(f32x16 v) const { return v / (1.0f + exp16(-v)); }
};
struct Sigmoid {
  MDLLM_SIMD f32x16 operator()(f32x16 v) const { return 1.0f / (1.0f + exp16(-v)); }
};

}  // namespace mdllm::detail
