// convkit/runtime.h: what the build and the machine offer (instruction set, CUDA), for info() and
// for run-time dispatch between the ISA-specific kernels.
#pragma once

#include <cstddef>
#include <string>

namespace convkit {

enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2 };

// The best ISA this CPU supports, capped by $CONVKIT_ISA (generic|avx2|avx512) when set. Decided
// once per process; tests force the plain path with CONVKIT_ISA=generic. The instructions the
// kernels may use.
Isa cpu_isa();
// The ISA whose routes the kernels take: the GEMM's register-block shape and cache blocks, and the
// routes that exist for one ISA only (the AVX2 indirect convolution). cpu_isa() unless
// CONVKIT_ISA=avx512-emulated on a CPU with AVX2 (with or without AVX-512): then avx512, while
// cpu_isa() is avx2, so an AVX2 machine runs every choice an AVX-512 machine makes (its 12 x 32 /
// 12 x 16 GEMM tiles computed by AVX2 code, the same sums in the same order) and the tests cover
// those paths where no AVX-512 CPU is at hand. Only the AVX-512 microkernels' own instructions stay
// untested then.
Isa route_isa();
const char* isa_name(Isa);
// What is wrong with the CONVKIT_ISA this process started with, as a sentence ("" when it is unset or
// understood and applied): a value the core does not know (ignored), or avx512-emulated without AVX2.
std::string isa_request_problem();

// ---- CUDA runtime (implemented in cuda/runtime.cu; stubs when built without CUDA) --------------
bool cuda_compiled();
// Number of usable devices; 0 with `reason` set when there is none (no driver, no GPU, ...).
int cuda_device_count(std::string* reason);
std::string cuda_device_name(int device);
void* cuda_malloc(std::size_t bytes);  // throws std::bad_alloc (-> MemoryError) when out of memory
void cuda_free(void* p) noexcept;
void cuda_memcpy_h2d(void* dst, const void* src, std::size_t bytes);
void cuda_memcpy_d2h(void* dst, const void* src, std::size_t bytes);
void cuda_memcpy_d2d(void* dst, const void* src, std::size_t bytes);
void cuda_memset_zero(void* p, std::size_t bytes);
void cuda_synchronize();
// The stream every convkit kernel runs on; set_cuda_stream(0) goes back to convkit's own stream.
void* cuda_current_stream();
void set_cuda_stream(void* stream);

}  // namespace convkit
