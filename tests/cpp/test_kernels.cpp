// C++-only checks of the core's private kernels: the thread pool (run by ctest).
#include <atomic>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "mdllm/geometry.hpp"
#include "parallel.hpp"


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
  test_parallel_for();
  if (failures) std::printf("%d check(s) failed\n", failures);
  else std::printf("all kernel checks passed\n");
  return failures ? 1 : 0;
}
