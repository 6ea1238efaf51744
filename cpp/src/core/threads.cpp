#include <atomic>
#include <thread>

#include "mdllm/geometry.hpp"

namespace mdllm {

static std::atomic<int> g_num_threads{0};

void set_num_threads(int n) { g_num_threads = n < 0 ? 0 : n; }

int num_threads() {
  const int n = g_num_threads;
  if (n > 0) return n;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

}  // namespace mdllm
