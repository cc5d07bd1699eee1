// DeviceArray: convkit's own array in GPU memory (shape, dtype, refcounted storage). Views made by
// reshape() share the storage. Built without CUDA, or with no usable device, every constructor throws
// a RuntimeError that says why.
//
// Storage comes from the caching allocator in cuda/runtime.cu (or, for arrays imported with DLPack,
// is owned by the producer and released through its deleter when the last view goes away).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "convkit/tensor.h"

namespace convkit {

struct DeviceArray {
  std::shared_ptr<void> storage;  // released on the last view (to the allocator cache, or the producer)
  std::size_t offset = 0;         // bytes into storage
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  int device_index = 0;

  static DeviceArray empty(DType dtype, const std::vector<int64_t>& shape);
  static DeviceArray zeros(DType dtype, const std::vector<int64_t>& shape);

  int64_t numel() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
  void* data() const { return static_cast<char*>(storage.get()) + offset; }
  Tensor view() const;
  DeviceArray reshape(const std::vector<int64_t>& new_shape) const;
};

// ---- runtime extras (cuda/runtime.cu; throwing stubs in device_array.cpp when built without CUDA) ----

// Throws std::runtime_error "<op>: no usable CUDA device (<reason>)" unless a device is usable.
void cuda_require(const char* op);
// Gives every cached, unused block back to the driver (waits for the device first).
void cuda_empty_cache();
std::size_t cuda_cached_bytes();
// Makes `consumer_stream` wait for the work queued so far on convkit's stream (DLPack hand-over).
void cuda_stream_wait(void* consumer_stream);
// Synchronizes convkit's stream and raises for any error a kernel flagged on the device.
void cuda_raise_pending_errors();

}  // namespace convkit
