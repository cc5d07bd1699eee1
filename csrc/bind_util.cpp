#include "bind_util.h"

#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace convkit {

// ---- output array memory ----------------------------------------------------------------------------
//
// CPU outputs of at least kCacheMinBytes come from a cache of freed blocks of exactly the same size
// (a training step asks for the same sizes every time). glibc serves such sizes with fresh mmap or
// trims them off the heap top when they are freed, so without the cache every step page-faults its
// activations and gradients in again: measured on LeNet-5 (batch 64, 1 thread) a quarter of the
// whole training step. A block goes back to the cache when the last numpy array (or view) using it
// dies (the array's base is a capsule that returns it); at most kCacheMaxBytes stay cached (the
// blocks freed longest ago go first), arrays above kCacheMaxBlock are plain numpy arrays, and a
// failed allocation empties the cache and retries
// before it raises MemoryError. Sanitized builds allocate every block fresh (ASan's quarantine must
// see each free).
namespace {

constexpr std::size_t kCacheMinBytes = std::size_t(64) << 10;
constexpr std::size_t kCacheMaxBlock = std::size_t(64) << 20;
constexpr std::size_t kCacheMaxBytes = std::size_t(256) << 20;
constexpr std::size_t kHeader = 64;  // the block's size, stored in front of the 64-byte aligned data

constexpr bool kUseCache = !kAddressSanitized;

// Freed blocks in the order they came back (oldest first), found by size. Making room for a new
// block frees the oldest ones: sizes a finished workload will not ask for again leave the cache.
struct BlockCache {
  std::mutex m;
  std::list<std::pair<std::size_t, void*>> order;                             // (size, raw), oldest first
  std::multimap<std::size_t, std::list<std::pair<std::size_t, void*>>::iterator> by_size;
  std::size_t bytes = 0;

  void* take(std::size_t size) {
    std::lock_guard<std::mutex> lock(m);
    auto it = by_size.find(size);
    if (it == by_size.end()) return nullptr;
    void* raw = it->second->second;
    order.erase(it->second);
    by_size.erase(it);
    bytes -= size;
    return raw;
  }
  // Keeps raw (evicting the oldest blocks to stay under the cap); false: the caller frees it.
  bool give(void* raw, std::size_t size) {
    if (!kUseCache || size > kCacheMaxBlock) return false;
    std::lock_guard<std::mutex> lock(m);
    while (!order.empty() && bytes + size > kCacheMaxBytes) {
      auto [old_size, old_raw] = order.front();
      auto range = by_size.equal_range(old_size);
      for (auto it = range.first; it != range.second; ++it)
        if (it->second == order.begin()) {
          by_size.erase(it);
          break;
        }
      order.pop_front();
      bytes -= old_size;
      std::free(old_raw);
    }
    order.emplace_back(size, raw);
    by_size.emplace(size, std::prev(order.end()));
    bytes += size;
    return true;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(m);
    for (auto& block : order) std::free(block.second);
    order.clear();
    by_size.clear();
    bytes = 0;
  }
};

BlockCache& block_cache() {
  static BlockCache* c = new BlockCache;  // never destroyed: arrays may die after static destructors
  return *c;
}

void release_block(void* data) {
  void* raw = static_cast<char*>(data) - kHeader;
  const std::size_t size = *static_cast<std::size_t*>(raw);
  if (!block_cache().give(raw, size)) std::free(raw);
}

// As numpy does for its own arrays of 4 MiB or more: ask Linux for transparent huge pages, which
// makes first-touch faults 512x fewer.
void advise_huge_pages(void* raw, std::size_t size) {
#if defined(MADV_HUGEPAGE)
  if (size < (std::size_t(4) << 20)) return;
  const std::uintptr_t page = 4096, b = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t start = (b + page - 1) & ~(page - 1), end = b + size;
  if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);  // a hint: errors ignored
#else
  (void)raw;
  (void)size;
#endif
}

// 64-byte aligned memory for `bytes` of data, from the cache or the system; throws std::bad_alloc.
void* acquire_block(std::size_t bytes) {
  const std::size_t size = (bytes + kHeader + 63) / 64 * 64;
  void* raw = kUseCache ? block_cache().take(size) : nullptr;
  if (!raw) {
    raw = std::aligned_alloc(64, size);
    if (!raw) {
      block_cache().clear();
      raw = std::aligned_alloc(64, size);
      if (!raw) throw std::bad_alloc();
    }
    advise_huge_pages(raw, size);
  }
  *static_cast<std::size_t*>(raw) = size;
  return static_cast<char*>(raw) + kHeader;
}

}  // namespace

std::size_t array_cache_bytes() {
  std::lock_guard<std::mutex> lock(block_cache().m);
  return block_cache().bytes;
}

void array_cache_clear() { block_cache().clear(); }

static bool dtype_from_numpy(const py::dtype& d, DType* out) {
  char kind = d.kind();
  auto size = d.itemsize();
  if (kind == 'f' && size == 4) *out = DType::Float32;
  else if (kind == 'f' && size == 8) *out = DType::Float64;
  else if (kind == 'i' && size == 8) *out = DType::Int64;
  else if (kind == 'u' && size == 1) *out = DType::UInt8;
  else return false;
  return true;
}

py::dtype numpy_dtype(DType dt) {
  switch (dt) {
    case DType::Float32: return py::dtype::of<float>();
    case DType::Float64: return py::dtype::of<double>();
    case DType::Int64: return py::dtype::of<int64_t>();
    case DType::UInt8: return py::dtype::of<uint8_t>();
  }
  throw std::invalid_argument("unknown dtype");
}

Tensor as_tensor(py::handle h, const char* op, const char* name, bool writable) {
  Tensor t;
  if (py::isinstance<DeviceArray>(h)) {
    return h.cast<const DeviceArray&>().view();
  }
  if (!py::isinstance<py::array>(h)) {
    throw py::type_error(str_cat(op, ": ", name, " must be a numpy array or convkit.DeviceArray, got ",
                                 std::string(py::str(py::type::of(h).attr("__name__")))));
  }
  auto a = py::reinterpret_borrow<py::array>(h);
  CONVKIT_CHECK(a.ndim() <= kMaxDims, op, ": ", name, " has ", a.ndim(), " dimensions, at most ", kMaxDims,
                " are supported");
  if (!dtype_from_numpy(a.dtype(), &t.dtype))
    throw py::type_error(str_cat(op, ": ", name, " has unsupported dtype ", std::string(py::str(a.dtype()))));
  CONVKIT_CHECK(a.dtype().byteorder() != '>', op, ": ", name, " is big-endian; convert it to native byte order");
  CONVKIT_CHECK((a.flags() & py::array::c_style) != 0, op, ": ", name,
                " must be C-contiguous (use numpy.ascontiguousarray)");
  CONVKIT_CHECK((a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0, op, ": ", name, " is not aligned");
  if (writable)
    CONVKIT_CHECK(a.writeable(), op, ": ", name, " is read-only");
  t.device = Device::CPU;
  t.ndim = static_cast<int>(a.ndim());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = a.shape(i);
  t.data = const_cast<void*>(a.data());
  return t;
}

bool as_optional_tensor(py::handle h, const char* op, const char* name, Tensor* t) {
  if (h.is_none()) return false;
  *t = as_tensor(h, op, name);
  return true;
}

std::pair<py::object, Tensor> new_array(Device device, DType dtype, const std::vector<int64_t>& shape) {
  if (device == Device::CUDA) {
    DeviceArray d = DeviceArray::empty(dtype, shape);
    Tensor t = d.view();
    return {py::cast(std::move(d)), t};
  }
  // Checked before numpy sees the shape: pybind11 computes the strides in signed 64-bit arithmetic,
  // which overflows (undefined behaviour) for claimed shapes like [1, 1, 2^41, 2^41].
  int64_t bytes = static_cast<int64_t>(dtype_size(dtype));
  for (int64_t d : shape) bytes = checked_mul(bytes, d, "output array (bytes)");
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  py::array a;
  if (static_cast<std::size_t>(bytes) >= kCacheMinBytes && static_cast<std::size_t>(bytes) + kHeader <= kCacheMaxBlock) {
    void* data = acquire_block(static_cast<std::size_t>(bytes));
    py::capsule owner(data, [](void* p) { release_block(p); });
    a = py::array(numpy_dtype(dtype), s, data, owner);
  } else {
    a = py::array(numpy_dtype(dtype), s);
  }
  Tensor t;
  t.data = a.mutable_data();
  t.dtype = dtype;
  t.device = Device::CPU;
  t.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = shape[i];
  return {std::move(a), t};
}

std::pair<py::object, Tensor> new_array_like(const Tensor& t, const std::vector<int64_t>& shape) {
  return new_array(t.device, t.dtype, shape);
}

std::vector<int64_t> shape_of(const Tensor& t) { return std::vector<int64_t>(t.shape, t.shape + t.ndim); }

}  // namespace convkit
