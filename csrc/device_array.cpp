#include "device_array.h"

#include "convkit/runtime.h"

namespace convkit {

int64_t DeviceArray::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n = checked_mul(n, s, "DeviceArray");
  return n;
}

DeviceArray DeviceArray::empty(DType dtype, const std::vector<int64_t>& shape) {
  CONVKIT_CHECK(shape.size() <= static_cast<std::size_t>(kMaxDims), "DeviceArray: at most ", kMaxDims,
                " dimensions, got ", shape.size());
  for (int64_t s : shape) CONVKIT_CHECK(s >= 0, "DeviceArray: negative dimension ", s);
  cuda_require("DeviceArray");
  DeviceArray a;
  a.dtype = dtype;
  a.shape = shape;
  std::size_t bytes = static_cast<std::size_t>(checked_mul(a.numel(), dtype_size(dtype), "DeviceArray"));
  void* p = cuda_malloc(bytes);
  a.storage = std::shared_ptr<void>(p, [](void* q) { cuda_free(q); });
  return a;
}

DeviceArray DeviceArray::zeros(DType dtype, const std::vector<int64_t>& shape) {
  DeviceArray a = empty(dtype, shape);
  if (a.nbytes()) cuda_memset_zero(a.data(), a.nbytes());
  return a;
}

Tensor DeviceArray::view() const {
  Tensor t;
  t.data = data();
  t.dtype = dtype;
  t.device = Device::CUDA;
  t.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = shape[i];
  return t;
}

DeviceArray DeviceArray::reshape(const std::vector<int64_t>& new_shape) const {
  CONVKIT_CHECK(new_shape.size() <= static_cast<std::size_t>(kMaxDims), "reshape: at most ", kMaxDims,
                " dimensions, got ", new_shape.size());
  std::vector<int64_t> s = new_shape;
  int infer = -1;
  int64_t known = 1;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      CONVKIT_CHECK(infer < 0, "reshape: only one dimension can be -1");
      infer = static_cast<int>(i);
    } else {
      CONVKIT_CHECK(s[i] >= 0, "reshape: negative dimension ", s[i]);
      known = checked_mul(known, s[i], "reshape");
    }
  }
  if (infer >= 0) {
    CONVKIT_CHECK(known > 0 && numel() % known == 0, "reshape: cannot infer -1 for ", numel(), " elements");
    s[infer] = numel() / known;
    known *= s[infer];
  }
  CONVKIT_CHECK(known == numel(), "reshape: cannot reshape ", numel(), " elements into ", s.size(), "-d shape of ",
                known, " elements");
  DeviceArray v = *this;
  v.shape = s;
  return v;
}

#ifndef CONVKIT_WITH_CUDA
void cuda_require(const char* op) { throw_no_cuda(op); }
void cuda_empty_cache() {}
std::size_t cuda_cached_bytes() { return 0; }
void cuda_stream_wait(void*) { throw_no_cuda("cuda_stream_wait"); }
void cuda_raise_pending_errors() {}
#endif

}  // namespace convkit
