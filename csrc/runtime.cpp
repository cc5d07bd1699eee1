// Process-wide runtime: thread count, per-thread scratch, CPU instruction-set detection, and the
// CUDA runtime stubs used when convkit is built without nvcc.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "convkit/parallel.h"
#include "convkit/runtime.h"
#include "convkit/tensor.h"

namespace convkit {

// ---- threads ------------------------------------------------------------------------------------

static int default_threads() {
  if (const char* s = std::getenv("OMP_NUM_THREADS")) {
    int n = std::atoi(s);
    if (n > 0) return n;
  }
#ifdef _OPENMP
  return omp_get_num_procs() > 0 ? omp_get_num_procs() : 1;
#else
  return 1;
#endif
}

static std::atomic<int> g_threads{0};

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = default_threads();
    g_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) {
  CONVKIT_CHECK(n >= 0 && n <= 4096, "set_num_threads: n must be in [0, 4096], got ", n);
  g_threads.store(n == 0 ? default_threads() : n, std::memory_order_relaxed);
}

// ---- scratch ------------------------------------------------------------------------------------

namespace {
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
struct Slot {
  std::unique_ptr<void, FreeDeleter> ptr;
  std::size_t bytes = 0;
};
constexpr int kSlots = 9;
thread_local Slot t_slots[kSlots];
}  // namespace

void* workspace(std::size_t bytes, int slot) {
  CONVKIT_CHECK(slot >= 0 && slot < kSlots, "workspace: slot must be in [0, ", kSlots, "), got ", slot);
  Slot& s = t_slots[slot];
  if (bytes == 0) bytes = 64;
  if (s.bytes < bytes) {
    std::size_t want = (bytes + 63) / 64 * 64;
    s.ptr.reset();
    s.bytes = 0;
    void* p = std::aligned_alloc(64, want);
    if (!p) throw std::bad_alloc();
    s.ptr.reset(p);
    s.bytes = want;
  }
  return s.ptr.get();
}

// ---- CPU instruction set ------------------------------------------------------------------------

// The values of CONVKIT_ISA the core understands: each caps the instruction set at `cap`;
// avx512-emulated also turns on route_isa()'s emulation. This table is the only list of them
// (isa_request_problem() and, through it, `import convkit` name them from here).
struct IsaRequest {
  const char* name;
  Isa cap;
};
constexpr IsaRequest kIsaRequests[] = {
    {"generic", Isa::Generic}, {"avx2", Isa::Avx2}, {"avx512", Isa::Avx512}, {"avx512-emulated", Isa::Avx2}};

static const IsaRequest* isa_request() {  // the entry CONVKIT_ISA names, or null (unset or not understood)
  const char* s = std::getenv("CONVKIT_ISA");
  if (!s) return nullptr;
  for (const IsaRequest& r : kIsaRequests)
    if (!std::strcmp(s, r.name)) return &r;
  return nullptr;
}

static bool avx512_emulated_requested() {
  const IsaRequest* r = isa_request();
  return r && !std::strcmp(r->name, "avx512-emulated");
}

static Isa detect_isa() {
  Isa best = Isa::Generic;
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::Avx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    best = Isa::Avx512;
#endif
  if (const IsaRequest* r = isa_request())
    if (static_cast<int>(r->cap) < static_cast<int>(best)) best = r->cap;
  return best;
}

Isa cpu_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

Isa route_isa() {
  static const Isa isa = cpu_isa() == Isa::Avx2 && avx512_emulated_requested() ? Isa::Avx512 : cpu_isa();
  return isa;
}

std::string isa_request_problem() {
  const char* s = std::getenv("CONVKIT_ISA");
  if (!s) return "";
  const IsaRequest* r = isa_request();
  if (!r) {
    std::string names;
    for (const IsaRequest& q : kIsaRequests) names += std::string(names.empty() ? "" : ", ") + q.name;
    return str_cat("CONVKIT_ISA='", s, "' is not one of ", names, ": ignored (running ", isa_name(cpu_isa()), ")");
  }
  if (avx512_emulated_requested() && route_isa() != Isa::Avx512)
    return str_cat("CONVKIT_ISA=avx512-emulated needs a CPU with AVX2: running ", isa_name(cpu_isa()));
  return "";
}

const char* isa_name(Isa i) {
  switch (i) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

// ---- CUDA stubs ---------------------------------------------------------------------------------
#ifndef CONVKIT_WITH_CUDA
bool cuda_compiled() { return false; }
int cuda_device_count(std::string* reason) {
  if (reason) *reason = "convkit was built without CUDA support (nvcc was not found at build time)";
  return 0;
}
std::string cuda_device_name(int) { throw_no_cuda("cuda_device_name"); }
void* cuda_malloc(std::size_t) { throw_no_cuda("cuda_malloc"); }
void cuda_free(void*) noexcept {}
void cuda_memcpy_h2d(void*, const void*, std::size_t) { throw_no_cuda("cuda_memcpy"); }
void cuda_memcpy_d2h(void*, const void*, std::size_t) { throw_no_cuda("cuda_memcpy"); }
void cuda_memcpy_d2d(void*, const void*, std::size_t) { throw_no_cuda("cuda_memcpy"); }
void cuda_memset_zero(void*, std::size_t) { throw_no_cuda("cuda_memset"); }
void cuda_synchronize() {}
void* cuda_current_stream() { return nullptr; }
void set_cuda_stream(void*) { throw_no_cuda("set_cuda_stream"); }
#endif

}  // namespace convkit
