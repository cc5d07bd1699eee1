// conv2d: output size, argument checks, device dispatch, the choice between the CPU implementations
// (conv2d_impl.h lists them) and the bias gradient. The formula is in conv2d.h.
#include "ops/conv2d.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <limits>

#include "convkit/parallel.h"
#include "ops/conv2d_impl.h"

namespace convkit {
namespace {

// floor((in + 2*pad - dil*(k-1) - 1) / stride) + 1 with every intermediate checked for overflow;
// may be <= 0 (the callers decide what to say about that).
int64_t out_size_raw(const char* op, int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  CONVKIT_CHECK(stride >= 1, op, ": stride must be >= 1, got ", stride);
  CONVKIT_CHECK(dil >= 1, op, ": dilation must be >= 1, got ", dil);
  CONVKIT_CHECK(pad >= 0, op, ": padding must be >= 0, got ", pad);
  CONVKIT_CHECK(k >= 1, op, ": kernel size must be >= 1, got ", k);
  CONVKIT_CHECK(in >= 0, op, ": input size must be >= 0, got ", in);
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t span = checked_mul(dil, k - 1, op) + 1;  // extent of the dilated kernel
  const int64_t pad2 = checked_mul(2, pad, op);
  if (pad2 > kMax - in) throw std::overflow_error(str_cat(op, ": input size ", in, " + 2 * padding ", pad,
                                                          " overflows 64-bit indexing"));
  const int64_t room = in + pad2 - span;  // >= -kMax, no overflow
  // floor division (room may be negative; C++ truncates toward zero)
  const int64_t q = room >= 0 ? room / stride : -((-room + stride - 1) / stride);
  return q + 1;
}

void check_params(const char* op, const Conv2dParams& p) {
  CONVKIT_CHECK(p.stride_h >= 1 && p.stride_w >= 1, op, ": stride must be >= 1, got (", p.stride_h, ", ",
                p.stride_w, ")");
  CONVKIT_CHECK(p.dil_h >= 1 && p.dil_w >= 1, op, ": dilation must be >= 1, got (", p.dil_h, ", ", p.dil_w, ")");
  CONVKIT_CHECK(p.pad_h >= 0 && p.pad_w >= 0, op, ": padding must be >= 0, got (", p.pad_h, ", ", p.pad_w, ")");
  CONVKIT_CHECK(p.groups >= 1, op, ": groups must be >= 1, got ", p.groups);
}

std::string shape4(int64_t a, int64_t b, int64_t c, int64_t d) { return str_cat("[", a, ", ", b, ", ", c, ", ", d, "]"); }

// The checks of conv2d_check with the names each entry point gives its arguments. `dref` is the
// argument the user chose the dtype with; the others must match it.
void check_conv(const char* op, const Tensor& x, const char* nx, const Tensor& w, const char* nw,
                const Tensor* b, const Tensor& y, const char* ny, const Tensor& dref, const char* ndref,
                const Conv2dParams& p) {
  check_params(op, p);
  check_ndim(x, 4, op, nx, "[N, C, H, W]");
  check_ndim(w, 4, op, nw, "[OC, C/groups, KH, KW]");
  check_ndim(y, 4, op, ny, "[N, OC, OH, OW]");
  if (b) check_ndim(*b, 1, op, "bias", "[OC]");

  check_float(dref, op, ndref);
  for (auto [t, n] : {std::pair<const Tensor*, const char*>{&x, nx}, {&w, nw}, {&y, ny}, {b, "bias"}}) {
    if (!t) continue;
    check_dtype(*t, dref.dtype, op, n);
    check_same_device(dref, *t, op, ndref, n);
  }
  check_nonempty(x, op, nx);
  check_nonempty(w, op, nw);
  check_nonempty(y, op, ny);
  if (b) check_nonempty(*b, op, "bias");

  const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t OC = w.shape[0], KH = w.shape[2], KW = w.shape[3], G = p.groups;
  CONVKIT_CHECK(C % G == 0, op, ": groups=", G, " must divide the input channels C=", C, " of ", nx);
  CONVKIT_CHECK(OC % G == 0, op, ": groups=", G, " must divide the output channels OC=", OC, " of ", nw);
  CONVKIT_CHECK(w.shape[1] == C / G, op, ": ", nw, " must have shape ", shape4(OC, C / G, KH, KW), ", got ",
                w.shape_str(), " ([OC, C/groups, KH, KW] with C=", C, ", groups=", G, ")");
  if (b) CONVKIT_CHECK(b->shape[0] == OC, op, ": bias must have shape [", OC, "], got ", b->shape_str());

  const int64_t OH = out_size_raw(op, H, KH, p.stride_h, p.pad_h, p.dil_h);
  const int64_t OW = out_size_raw(op, W, KW, p.stride_w, p.pad_w, p.dil_w);
  CONVKIT_CHECK(OH > 0 && OW > 0, op, ": output size ", OH, "x", OW, " <= 0 for input ", H, "x", W, ", kernel ",
                KH, "x", KW, ", stride (", p.stride_h, ", ", p.stride_w, "), padding (", p.pad_h, ", ", p.pad_w,
                "), dilation (", p.dil_h, ", ", p.dil_w, ")");
  CONVKIT_CHECK(y.shape[0] == N && y.shape[1] == OC && y.shape[2] == OH && y.shape[3] == OW, op, ": ", ny,
                " must have shape ", shape4(N, OC, OH, OW), " ([N, OC, OH, OW] for ", nx, " ", x.shape_str(), " and ",
                nw, " ", w.shape_str(), "), got ", y.shape_str());
  // Products the kernels form beyond the tensors' own sizes (numel() above checked those).
  checked_mul(checked_mul(checked_mul(C / G, KH, op), KW, op), checked_mul(OH, OW, op), op);
}

// ---- which CPU implementation --------------------------------------------------------------------

enum Impl : int { kAuto = 0, kRef = 1, kGemm = 2, kDirect = 3 };

int parse_impl(const std::string& s, const char* what) {
  if (s == "auto") return kAuto;
  if (s == "ref") return kRef;
  if (s == "gemm") return kGemm;
  if (s == "direct") return kDirect;
  throw std::invalid_argument(str_cat(what, " must be 'auto', 'ref', 'gemm' or 'direct', got '", s, "'"));
}

const char* impl_name(int i) {
  switch (i) {
    case kRef: return "ref";
    case kGemm: return "gemm";
    case kDirect: return "direct";
    default: return "auto";
  }
}

std::atomic<int>& impl_setting() {
  static std::atomic<int> s{[] {
    const char* e = std::getenv("CONVKIT_CONV_IMPL");
    return e && *e ? parse_impl(e, "CONVKIT_CONV_IMPL") : int(kAuto);
  }()};
  return s;
}

int current_impl() { return impl_setting().load(std::memory_order_relaxed); }

[[noreturn]] void throw_declined(const char* op, int impl) {
  throw std::runtime_error(str_cat(op, ": the ", impl_name(impl), " path declined this shape (conv2d CPU impl forced to '",
                                   impl_name(impl), "')"));
}

}  // namespace

std::string conv2d_set_cpu_impl(const std::string& impl) {
  const int v = parse_impl(impl, "conv2d_set_cpu_impl: impl");
  return impl_name(impl_setting().exchange(v));
}

int64_t conv2d_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  const int64_t o = out_size_raw("conv2d_out_size", in, k, stride, pad, dil);
  CONVKIT_CHECK(o > 0, "conv2d_out_size: output size ", o, " <= 0 for input ", in, ", kernel ", k, ", stride ",
                stride, ", padding ", pad, ", dilation ", dil);
  return o;
}

void conv2d_check(const char* op, const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y,
                  const Conv2dParams& p) {
  check_conv(op, x, "x", w, "weight", b, y, "y", x, "x", p);
}

// ---- checked entry points -----------------------------------------------------------------------

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) {
  const char* op = "conv2d_forward";
  conv2d_check(op, x, w, b, y, p);
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, conv2d_forward_cuda(x, w, b, y, p));
    return;
  }
  conv2d_forward_cpu(x, w, b, y, p);
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) {
  const char* op = "conv2d_backward_data";
  check_conv(op, dx, "dx", w, "weight", nullptr, dy, "dy", dy, "dy", p);
  if (dy.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, conv2d_backward_data_cuda(dy, w, dx, p));
    return;
  }
  conv2d_backward_data_cpu(dy, w, dx, p);
}

void conv2d_backward_weight(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) {
  const char* op = "conv2d_backward_weight";
  check_conv(op, x, "x", dw, "dw", nullptr, dy, "dy", x, "x", p);
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, conv2d_backward_weight_cuda(x, dy, dw, p));
    return;
  }
  conv2d_backward_weight_cpu(x, dy, dw, p);
}

void conv2d_backward_bias(const Tensor& dy, const Tensor& db) {
  const char* op = "conv2d_backward_bias";
  check_ndim(dy, 4, op, "dy", "[N, OC, OH, OW]");
  check_ndim(db, 1, op, "db", "[OC]");
  check_float(dy, op, "dy");
  check_dtype(db, dy.dtype, op, "db");
  check_same_device(dy, db, op, "dy", "db");
  check_nonempty(dy, op, "dy");
  CONVKIT_CHECK(db.shape[0] == dy.shape[1], op, ": db must have shape [", dy.shape[1], "], got ", db.shape_str());
  check_nonempty(db, op, "db");
  if (dy.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, conv2d_backward_bias_cuda(dy, db));
    return;
  }
  conv2d_backward_bias_cpu(dy, db);
}

// ---- CPU: the fastest path that takes the shape, the reference last -----------------------------

void conv2d_forward_cpu(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) {
  const char* op = "conv2d_forward";
  const int impl = current_impl();
  if (impl == kRef) return conv2d_detail::forward_ref(x, w, b, y, p);
  if (impl == kAuto && conv2d_detail::forward_winograd(x, w, b, y, p)) return;
  if (impl == kAuto && conv2d_detail::forward_winograd_rows(x, w, b, y, p)) return;
  if (impl == kAuto || impl == kDirect) {
    if (conv2d_detail::forward_direct(x, w, b, y, p, impl == kDirect)) return;
    if (impl == kDirect) throw_declined(op, impl);
  }
  if (conv2d_detail::forward_indirect(x, w, b, y, p)) return;
  if (conv2d_detail::forward_gemm(x, w, b, y, p)) return;
  if (impl == kGemm) throw_declined(op, impl);
  conv2d_detail::forward_ref(x, w, b, y, p);
}

// The backward passes have direct paths for the shapes their kernels take; "direct" forces them
// there and runs the other shapes as "auto" does.
void conv2d_backward_data_cpu(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) {
  const int impl = current_impl();
  if (impl == kAuto && conv2d_detail::backward_data_winograd(dy, w, dx, p)) return;
  if (impl == kAuto && conv2d_detail::backward_data_winograd_rows(dy, w, dx, p)) return;
  if ((impl == kAuto || impl == kDirect) && conv2d_detail::backward_data_direct(dy, w, dx, p, impl == kDirect)) return;
  if (impl != kRef && conv2d_detail::backward_data_gemm(dy, w, dx, p)) return;
  if (impl == kGemm) throw_declined("conv2d_backward_data", impl);
  conv2d_detail::backward_data_ref(dy, w, dx, p);
}

void conv2d_backward_weight_cpu(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) {
  const int impl = current_impl();
  if (impl == kAuto && conv2d_detail::backward_weight_winograd(x, dy, dw, p)) return;
  if (impl == kAuto && conv2d_detail::backward_weight_winograd_rows(x, dy, dw, p)) return;
  if ((impl == kAuto || impl == kDirect) && conv2d_detail::backward_weight_direct(x, dy, dw, p, impl == kDirect))
    return;
  if (impl != kRef && conv2d_detail::backward_weight_gemm(x, dy, dw, p)) return;
  if (impl == kGemm) throw_declined("conv2d_backward_weight", impl);
  conv2d_detail::backward_weight_ref(x, dy, dw, p);
}

// db[o] = sum over n, i, j of dy[n, o, i, j]. One task per output channel (each db[o] summed by one
// thread in a fixed order: thread-count independent). The plane sums use 8 independent partial
// sums so the loop vectorizes without reassociation flags; they are combined in double.
void conv2d_backward_bias_cpu(const Tensor& dy, const Tensor& db) {
  CONVKIT_DISPATCH_FLOAT(dy.dtype, "conv2d_backward_bias", [&] {
    const int64_t N = dy.shape[0], OC = dy.shape[1], HW = dy.shape[2] * dy.shape[3];
    const scalar_t* g = dy.ptr<scalar_t>();
    scalar_t* out = db.ptr<scalar_t>();
    const int64_t per_channel = checked_mul(N, HW, "conv2d_backward_bias");
    parallel_for(OC, std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, per_channel)),
                 [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        double total = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          const scalar_t* plane = g + (n * OC + o) * HW;
          scalar_t part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          int64_t i = 0;
          for (; i + 8 <= HW; i += 8)
            for (int k = 0; k < 8; ++k) part[k] += plane[i + k];
          for (; i < HW; ++i) part[i & 7] += plane[i];
          for (int k = 0; k < 8; ++k) total += double(part[k]);
        }
        out[o] = static_cast<scalar_t>(total);
      }
    });
  });
}

}  // namespace convkit
