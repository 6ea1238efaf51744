// C++-only checks of the core's private kernels: the vector exp and the thread pool (run by ctest).
#include <atomic>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

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

int main() {
  test_exp16();
  test_parallel_for();
  if (failures) std::printf("%d check(s) failed\n", failures);
  else std::printf("all kernel checks passed\n");
  return failures ? 1 : 0;
}
