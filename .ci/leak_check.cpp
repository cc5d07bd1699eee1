// LeakSanitizer driver for .ci/sanitize.sh: the CPU kernels linked without Python (the interpreter
// leaks by design at exit, which would drown real reports), run in a loop over LeNet- and AlexNet-
// like shapes, forward and backward, 1 and 2 threads, plus the error paths (a throwing check must
// not leak what was allocated before it). Built with -fsanitize=address,undefined; LSan runs at exit.
#include <cstdio>
#include <random>
#include <stdexcept>
#include <vector>

#include "convkit/parallel.h"
#include "convkit/tensor.h"
#include "ops/activation.h"
#include "ops/conv2d.h"
#include "ops/linear.h"
#include "ops/lrn.h"
#include "ops/max_pool2d.h"
#include "ops/softmax.h"

using namespace convkit;

namespace {

template <class T>
struct Buf {
  std::vector<T> v;
  Tensor t;
  Buf(std::vector<int64_t> shape, std::mt19937* rng = nullptr) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    v.assign(static_cast<size_t>(n), T(0));
    if (rng) {
      std::uniform_real_distribution<double> u(-1.0, 1.0);
      for (auto& e : v) e = static_cast<T>(u(*rng));
    }
    t.data = v.data();
    t.dtype = dtype_of<T>::value;
    t.ndim = static_cast<int>(shape.size());
    for (int i = 0; i < t.ndim; ++i) t.shape[i] = shape[i];
  }
};

template <class T>
void one_pass(std::mt19937& rng, int64_t n, int64_t c, int64_t hw, int64_t oc, int64_t k, int64_t groups) {
  Conv2dParams cp;
  cp.pad_h = cp.pad_w = k / 2;
  cp.groups = groups;
  int64_t oh = conv2d_out_size(hw, k, 1, k / 2, 1);
  Buf<T> x({n, c, hw, hw}, &rng), w({oc, c / groups, k, k}, &rng), b({oc}, &rng), y({n, oc, oh, oh});
  conv2d_forward(x.t, w.t, &b.t, y.t, cp);
  Buf<T> r({n, oc, oh, oh});
  relu_forward(y.t, r.t);
  Buf<T> l({n, oc, oh, oh}), s({n, oc, oh, oh});
  lrn_forward(r.t, l.t, s.t, LrnParams{5, 1e-4, 0.75, 2.0});
  Pool2dParams pp;
  pp.kernel_h = pp.kernel_w = 3;
  pp.stride_h = pp.stride_w = 2;
  pp.ceil_mode = true;
  int64_t ph = pool2d_out_size(oh, 3, 2, 0, true);
  Buf<T> py({n, oc, ph, ph});
  Buf<int64_t> idx({n, oc, ph, ph});
  max_pool2d_forward(l.t, py.t, idx.t, pp);
  int64_t feat = oc * ph * ph;
  Buf<T> fw({10, feat}, &rng), fb({10}, &rng), logits({n, 10});
  Tensor flat = py.t;
  flat.ndim = 2, flat.shape[0] = n, flat.shape[1] = feat;
  linear_forward(flat, fw.t, &fb.t, logits.t);
  Buf<int64_t> labels({n});
  for (int64_t i = 0; i < n; ++i) labels.v[i] = i % 10;
  Buf<T> loss({n}), probs({n, 10}), dloss({n}), dlogits({n, 10});
  softmax_cross_entropy_forward(logits.t, labels.t, loss.t, probs.t);
  for (auto& e : dloss.v) e = T(1) / T(n);
  softmax_cross_entropy_backward(probs.t, labels.t, dloss.t, dlogits.t);
  Buf<T> sm({n, 10}), lsm({n, 10}), dsm({n, 10});
  softmax_forward(logits.t, sm.t);
  softmax_backward(sm.t, dlogits.t, dsm.t);
  log_softmax_forward(logits.t, lsm.t);
  log_softmax_backward(lsm.t, dlogits.t, dsm.t);
  // backward
  Buf<T> dflat({n, feat}), dfw({10, feat}), dfb({10});
  linear_backward_data(dlogits.t, fw.t, dflat.t);
  linear_backward_weight(flat, dlogits.t, dfw.t);
  linear_backward_bias(dlogits.t, dfb.t);
  Tensor dpy = dflat.t;
  dpy.ndim = 4, dpy.shape[0] = n, dpy.shape[1] = oc, dpy.shape[2] = ph, dpy.shape[3] = ph;
  Buf<T> dl({n, oc, oh, oh}), dr({n, oc, oh, oh}), dy({n, oc, oh, oh});
  max_pool2d_backward(dpy, idx.t, dl.t, pp);
  lrn_backward(r.t, l.t, s.t, dl.t, dr.t, LrnParams{5, 1e-4, 0.75, 2.0});
  relu_backward(dr.t, r.t, dy.t);
  Buf<T> dx({n, c, hw, hw}), dw({oc, c / groups, k, k}), db({oc});
  conv2d_backward_data(dy.t, w.t, dx.t, cp);
  conv2d_backward_weight(x.t, dy.t, dw.t, cp);
  conv2d_backward_bias(dy.t, db.t);
  Buf<T> dr2({n, c, hw, hw});
  Buf<uint8_t> mask({n, c, hw, hw});
  dropout_forward(x.t, dr2.t, mask.t, 0.5, 42);
  dropout_backward(dr2.t, mask.t, dx.t, 0.5);
}

// Error paths: each call must throw (a clear exception) and free whatever it allocated first.
int error_paths() {
  int thrown = 0;
  Buf<float> x({1, 2, 5, 5}), w({3, 2, 3, 3}), y({1, 3, 9, 9}), bad_w({3, 1, 3, 3});
  Conv2dParams cp;
  try { conv2d_forward(x.t, bad_w.t, nullptr, y.t, cp); } catch (const std::invalid_argument&) { ++thrown; }
  try { conv2d_forward(x.t, w.t, nullptr, y.t, cp); } catch (const std::invalid_argument&) { ++thrown; }
  Buf<double> l({2, 3});
  Buf<int64_t> lab({2});
  lab.v = {0, 7};
  lab.t.data = lab.v.data();
  Buf<double> loss({2}), probs({2, 3});
  try { softmax_cross_entropy_forward(l.t, lab.t, loss.t, probs.t); } catch (const std::invalid_argument&) {
    ++thrown;
  }
  return thrown;
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (int it = 0; it < 20; ++it) {
      one_pass<float>(rng, 2, 1, 28, 6, 5, 1);    // LeNet conv1-like
      one_pass<float>(rng, 1, 4, 27, 8, 5, 2);    // AlexNet conv2-like (groups, LRN)
      one_pass<double>(rng, 3, 3, 13, 4, 3, 1);
      one_pass<float>(rng, 1, 96, 13, 64, 3, 2);  // enough work for the threaded GEMM paths
    }
  }
  int thrown = error_paths();
  if (thrown != 3) {
    std::fprintf(stderr, "leak_check: expected 3 exceptions from the error paths, got %d\n", thrown);
    return 1;
  }
  std::printf("leak_check: 160 forward/backward passes and 3 error paths ran; LeakSanitizer reports at exit\n");
  return 0;
}
