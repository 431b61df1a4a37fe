// Splits [0, n) into contiguous ranges, one per thread; the calling thread takes the first.
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

#include "camembed/cpu_info.h"

namespace camembed {

inline int resolveThreads(int requested) { return requested > 0 ? requested : defaultThreadCount(); }

// How many ranges parallelRanges will use for these arguments (to size per-thread state).
inline int parallelRangeCount(int64_t n, int threads, int64_t minPerThread) {
  int64_t useful = std::max<int64_t>(1, n / std::max<int64_t>(1, minPerThread));
  return int(std::min<int64_t>(std::max(1, threads), useful));
}

// fn(threadIndex, begin, end). Uses at most `threads` threads and at least `minPerThread`
// items per thread, so small jobs do not pay for thread start-up (~tens of microseconds).
template <class Fn>
void parallelRanges(int64_t n, int threads, int64_t minPerThread, Fn&& fn) {
  int count = parallelRangeCount(n, threads, minPerThread);
  if (count <= 1) {
    fn(0, int64_t(0), n);
    return;
  }
  // An exception in a worker (e.g. allocation failure) is carried to the caller, which rethrows
  // it after every worker has finished: escaping a std::thread it would end the process.
  std::vector<std::exception_ptr> errors(count);
  std::vector<std::thread> workers;
  workers.reserve(count - 1);
  auto bound = [&](int i) { return n * i / count; };
  auto guarded = [&](int i) {
    try {
      fn(i, bound(i), bound(i + 1));
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  for (int i = 1; i < count; ++i) {
    try {
      workers.emplace_back(guarded, i);
    } catch (...) {
      guarded(i);  // no thread to be had (system_error, or bad_alloc for its state): run that range here
    }
  }
  guarded(0);
  for (auto& w : workers) w.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace camembed
