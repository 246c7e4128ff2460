// A parallel loop over chunks of work on the calling thread and one of XLA's pool threads. Both
// take chunks from one counter, so a pool thread that starts late (or never: all are busy) only
// takes what is left, and the call never waits on it for more than the chunk it is running.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace bnlab {

// Calls chunk(i) once for each i in [0, chunks), on this thread and one pool thread, and
// returns when every call has returned.
template <typename Chunk>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t chunks, const Chunk& chunk) {
  if (chunks <= 1) {
    for (int64_t i = 0; i < chunks; ++i) chunk(i);
    return;
  }
  struct Counters {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto counters = std::make_shared<Counters>();  // outlives the call: the pool may start later
  auto work = [counters, chunks, &chunk]() {     // `chunk` is called only before the return
    for (int64_t i; (i = counters->next.fetch_add(1)) < chunks;) {
      chunk(i);
      counters->done.fetch_add(1, std::memory_order_release);
    }
  };
  pool.Schedule([work]() { work(); });
  work();
  while (counters->done.load(std::memory_order_acquire) < chunks) std::this_thread::yield();
}

}  // namespace bnlab
