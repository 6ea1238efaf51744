// Work sharing over an index range on a persistent thread pool; private to the core.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "mdllm/geometry.hpp"

namespace mdllm::detail {

// One parallel loop: call(context, begin, end) over chunks of [0, n).
struct ParallelJob {
  void (*call)(void* context, int64_t begin, int64_t end);
  void* context;
  int64_t n;
  int64_t chunk;
};

// Runs the job on `threads` threads (the caller plus pool workers). The workers persist between
// calls and spin briefly before sleeping, so the back-to-back small loops of a single frame cost
// microseconds to hand out, not a thread start each. Nested calls, and calls made while another
// thread holds the pool, run on the calling thread alone. The first exception thrown is rethrown.
void run_parallel(const ParallelJob& job, int threads);

// Calls fn(begin, end) on disjoint chunks of [0, n) from num_threads() threads. Chunks are handed
// out dynamically so uneven work (e.g. the rows of a triangular matrix) still balances.
template <class Fn>
void parallel_for(int64_t n, Fn&& fn, int64_t min_chunk = 1) {
  const int64_t threads = std::min<int64_t>(num_threads(), (n + min_chunk - 1) / min_chunk);
  if (threads <= 1) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  // about 8 chunks per thread, each a whole number of min_chunk (e.g. a kernel's row tile)
  const int64_t chunk = std::max<int64_t>(1, n / (threads * 8 * min_chunk)) * min_chunk;
  using F = std::remove_reference_t<Fn>;
  ParallelJob job{[](void* c, int64_t b, int64_t e) { (*static_cast<F*>(c))(b, e); },
                  const_cast<void*>(static_cast<const void*>(&fn)), n, chunk};
  run_parallel(job, static_cast<int>(threads));
}

}  // namespace mdllm::detail
