// Minimal work-sharing loop over an index range; private to the core.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "mdllm/geometry.hpp"

namespace mdllm::detail {

// Calls fn(begin, end) on disjoint chunks of [0, n) from num_threads() threads. Chunks are handed
// out dynamically so uneven work (e.g. the rows of a triangular matrix) still balances.
template <class Fn>
void parallel_for(int64_t n, Fn&& fn, int64_t min_chunk = 1) {
  const int64_t threads = std::min<int64_t>(num_threads(), (n + min_chunk - 1) / min_chunk);
  if (threads <= 1) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  const int64_t chunk = std::max<int64_t>(min_chunk, n / (threads * 8));
  std::atomic<int64_t> next{0};
  auto worker = [&] {
    for (;;) {
      const int64_t begin = next.fetch_add(chunk);
      if (begin >= n) return;
      fn(begin, std::min(n, begin + chunk));
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
}

}  // namespace mdllm::detail
