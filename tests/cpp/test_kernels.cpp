// C++-only checks of the core's private kernels: the vector exp, the thread pool and the AMX products
// (run by ctest).
#include <atomic>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "amx.hpp"
#include "check.hpp"
#include "mdllm/geometry.hpp"
#include "parallel.hpp"
#include "simd.hpp"


// exp16 against double-precision exp over the whole range the kernels use (softmax, SiLU, RBF).
static void test_exp16() {
  double worst = 0.0;
  float lanes[16];
  for (float x = -87.0f; x < 88.0f; x += 0.01f) {
    for (int i = 0; i < 16; ++i) lanes[i] = x + 0.000613f * static_cast<float>(i);
    const mdllm::detail::f32x16 e = mdllm::detail::exp16(mdllm::detail::load16(lanes));
    for (int i = 0; i < 16; ++i) {
      const double ref = std::exp(static_cast<double>(lanes[i]));
      worst = std::max(worst, std::fabs(e[i] - ref) / ref);
    }
  }
  std::printf("exp16: max relative error %.3g\n", worst);
  CHECK(worst < 2.4e-7);  // 2 float ulps
  lanes[0] = -1000.0f;  // far below the range: tiny, not NaN or negative
  lanes[1] = 1000.0f;   // far above: large and finite
  const mdllm::detail::f32x16 e = mdllm::detail::exp16(mdllm::detail::load16(lanes));
  CHECK(e[0] >= 0.0f && e[0] < 1e-37f);
  CHECK(std::isfinite(e[1]) && e[1] > 1e38f);
}

// Every index exactly once, nested loops complete, and a worker's exception reaches the caller.
static void test_parallel_for() {
  mdllm::set_num_threads(2);
  for (int round = 0; round < 200; ++round) {  // many back-to-back loops: the pool's hand-off
    const int64_t n = 1 + round * 7;
    std::vector<std::atomic<int>> hits(n);
    mdllm::detail::parallel_for(n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        hits[i].fetch_add(1);
        std::atomic<int64_t> inner{0};  // a loop inside a loop: runs serially, must not deadlock
        mdllm::detail::parallel_for(3, [&](int64_t b, int64_t e) {
          for (int64_t k = b; k < e; ++k) inner += k + 1;
        });
        CHECK(inner.load() == 6);
      }
    }, 8);
    for (auto& h : hits) CHECK(h.load() == 1);
  }
  bool caught = false;
  try {
    mdllm::detail::parallel_for(1000, [](int64_t begin, int64_t) {
      if (begin > 500) throw std::runtime_error("boom");
    });
  } catch (const std::runtime_error&) {
    caught = true;
  }
  CHECK(caught);
  std::atomic<int64_t> sum{0};  // the pool still works after an exception
  mdllm::detail::parallel_for(100, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) sum += i;
  });
  CHECK(sum.load() == 4950);
}

// bf16x3 products on the AMX tiles against double precision, on shapes that leave partial tiles in
// every dimension (rows, inputs and outputs not multiples of 16 or 32) and with a row stride.
static void test_amx_product() {
  if (!mdllm::detail::amx_enabled()) {
    std::printf("amx: not available on this CPU/OS, skipped\n");
    return;
  }
  const int64_t shapes[][3] = {{1, 5, 3}, {17, 37, 20}, {107, 128, 384}, {40, 256, 130}};
  for (const auto& shape : shapes) {
    const int64_t m = shape[0], in = shape[1], out = shape[2], ldx = in + 3, ldy = out + 5;
    std::vector<float> x(m * ldx), w(in * out), b(out), y(m * ldy, -7.0f);
    uint32_t state = 12345;
    auto uniform = [&state] { return (state = state * 1664525u + 1013904223u) / 4294967296.0f * 2.0f - 1.0f; };
    for (float& v : x) v = uniform();
    for (float& v : w) v = uniform();
    for (float& v : b) v = uniform();
    const mdllm::detail::PackedLinear packed = mdllm::detail::amx_pack(w.data(), in, out);
    mdllm::detail::amx_product(x.data(), ldx, m, packed, b.data(), y.data(), ldy);
    double worst = 0.0;
    for (int64_t r = 0; r < m; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double ref = b[o], scale = std::fabs(b[o]);
        for (int64_t i = 0; i < in; ++i) {
          ref += static_cast<double>(x[r * ldx + i]) * w[i * out + o];
          scale += std::fabs(x[r * ldx + i] * w[i * out + o]);
        }
        worst = std::max(worst, std::fabs(y[r * ldy + o] - ref) / scale);
      }
    for (int64_t r = 0; r < m; ++r)  // the padding between rows is left alone
      for (int64_t o = out; o < ldy; ++o) CHECK(y[r * ldy + o] == -7.0f);
    std::printf("amx %lldx%lldx%lld: max error %.3g of the sum of |terms|\n", static_cast<long long>(m),
                static_cast<long long>(in), static_cast<long long>(out), worst);
    CHECK(worst < 2e-5);  // a single bf16 product would be ~4e-3
  }
}

// Packing block by block (as attention's threads do with their rows) gives the whole-matrix packing.
static void test_amx_pack_blocks() {
  if (!mdllm::detail::amx_enabled()) return;
  const int64_t in = 37, out = 53;
  std::vector<float> w(in * out);
  for (int64_t i = 0; i < in * out; ++i) w[i] = std::sin(0.37f * static_cast<float>(i));
  const mdllm::detail::PackedLinear whole = mdllm::detail::amx_pack(w.data(), in, out);
  mdllm::detail::PackedLinear by_rows = mdllm::detail::amx_packed_zeros(in, out);
  for (int64_t k0 = 0; k0 < in; k0 += 16)
    mdllm::detail::amx_pack_into(by_rows, w.data(), out, k0, std::min(in, k0 + 16), 0, out);
  mdllm::detail::PackedLinear by_cols = mdllm::detail::amx_packed_zeros(in, out);
  for (int64_t n0 = 0; n0 < out; n0 += 16)
    mdllm::detail::amx_pack_into(by_cols, w.data(), out, 0, in, n0, std::min(out, n0 + 16));
  CHECK(by_rows.hi == whole.hi && by_rows.lo == whole.lo);
  CHECK(by_cols.hi == whole.hi && by_cols.lo == whole.lo);
}

int main() {
  test_exp16();
  test_parallel_for();
  test_amx_product();
  test_amx_pack_blocks();
  if (failures) std::printf("%d check(s) failed\n", failures);
  else std::printf("all kernel checks passed\n");
  return failures ? 1 : 0;
}
