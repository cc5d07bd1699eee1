// DeviceArray: convkit's own array in GPU memory (shape, dtype, refcounted storage). Views made by
// reshape() share the storage. Built without CUDA, every constructor throws a clear RuntimeError.
#pragma once

#include <memory>
#include <vector>

#include "convkit/tensor.h"

namespace convkit {

struct DeviceArray {
  std::shared_ptr<void> storage;  // cudaFree on the last release
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

}  // namespace convkit
