// convkit/parallel.h: threading and scratch memory for CPU kernels.
//
// Threads: kernels use OpenMP with `num_threads(convkit::num_threads())` on every parallel region, so
// convkit.set_num_threads() applies to calls from any Python thread (omp_set_num_threads would only
// affect the calling thread). Results must not depend on the thread count beyond float rounding:
// split work over independent outputs, never reduce into shared accumulators in thread order.
//
// Scratch: workspace() hands out a per-thread buffer that grows and is reused, so the hot path does
// not allocate on every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace convkit {

int num_threads();          // threads each parallel region uses (>= 1)
void set_num_threads(int);  // n >= 1; 0 restores the default (OMP_NUM_THREADS or the core count)

// Calls f(begin, end) over [0, n) split into contiguous chunks, one per thread. Small n runs inline.
template <class F>
void parallel_for(int64_t n, int64_t min_per_thread, F&& f) {
  if (n <= 0) return;
  int nt = num_threads();
  if (min_per_thread < 1) min_per_thread = 1;
  int64_t max_useful = (n + min_per_thread - 1) / min_per_thread;
  if (max_useful < nt) nt = static_cast<int>(max_useful);
  if (nt <= 1) {
    f(int64_t(0), n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    int t = omp_get_thread_num();
    int T = omp_get_num_threads();
#else
    int t = 0, T = 1;
#endif
    int64_t chunk = (n + T - 1) / T;
    int64_t b = t * chunk, e = b + chunk < n ? b + chunk : n;
    if (b < e) f(b, e);
  }
}

// 64-byte aligned scratch for the calling thread, valid until the next workspace() call with the
// same slot on the same thread. Slots let one kernel hold a few buffers at once.
void* workspace(std::size_t bytes, int slot = 0);
template <class T> T* workspace_as(std::size_t count, int slot = 0) {
  return static_cast<T*>(workspace(count * sizeof(T), slot));
}

}  // namespace convkit
