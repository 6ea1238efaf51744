#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

#include "mdllm/geometry.hpp"
#include "parallel.hpp"

namespace mdllm {

static std::atomic<int> g_num_threads{0};

void set_num_threads(int n) { g_num_threads = n < 0 ? 0 : n; }

int num_threads() {
  const int n = g_num_threads;
  if (n > 0) return n;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

namespace detail {
namespace {

thread_local bool t_in_parallel = false;

// How long an idle worker polls for the next job before sleeping: long enough to bridge the gaps
// between the layers of one frame, short enough not to burn a core when the caller goes quiet.
constexpr auto kSpin = std::chrono::microseconds(300);

class ThreadPool {
 public:
  explicit ThreadPool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { work(i); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int workers() const { return static_cast<int>(threads_.size()); }

  void run(const ParallelJob& job, int threads) {
    job_ = job;
    active_workers_ = std::min(threads - 1, workers());
    next_.store(0);
    error_ = nullptr;
    pending_.store(workers());
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    chunks();
    while (pending_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void chunks() {
    t_in_parallel = true;
    try {
      for (;;) {
        const int64_t begin = next_.fetch_add(job_.chunk);
        if (begin >= job_.n) break;
        job_.call(job_.context, begin, std::min(job_.n, begin + job_.chunk));
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
      next_.store(job_.n);  // stop handing out chunks
    }
    t_in_parallel = false;
  }

  void work(int index) {
    uint64_t seen = 0;
    for (;;) {
      const auto idle_since = std::chrono::steady_clock::now();
      for (int polls = 0; generation_.load(std::memory_order_acquire) == seen; ++polls) {
        if ((polls & 63) != 63 || std::chrono::steady_clock::now() - idle_since < kSpin) continue;
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_.load() != seen; });
        if (stopping_) return;
      }
      seen = generation_.load(std::memory_order_acquire);
      if (index < active_workers_) chunks();
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::atomic<uint64_t> generation_{0};
  ParallelJob job_{};
  int active_workers_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> pending_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

std::mutex g_pool_mutex;    // one parallel loop at a time uses the pool
ThreadPool* g_pool = nullptr;  // never destroyed: workers may not be joinable at exit or after fork
pid_t g_pool_pid = 0;

}  // namespace

void run_parallel(const ParallelJob& job, int threads) {
  std::unique_lock<std::mutex> lock(g_pool_mutex, std::try_to_lock);
  if (t_in_parallel || threads <= 1 || !lock.owns_lock()) {
    if (job.n > 0) job.call(job.context, 0, job.n);
    return;
  }
  const int workers = std::max(threads, num_threads()) - 1;
  if (!g_pool || g_pool_pid != getpid() || g_pool->workers() != workers) {
    if (g_pool && g_pool_pid == getpid()) delete g_pool;  // after fork() the old workers do not exist
    g_pool = new ThreadPool(workers);
    g_pool_pid = getpid();
  }
  g_pool->run(job, threads);
}

}  // namespace detail
}  // namespace mdllm
