// lrn_avx2.cpp: the float32 task kernels of LRN for AVX2 + FMA. CMake compiles this file with
// -mavx2 -mfma; lrn.cpp calls it only when convkit::cpu_isa() >= Avx2.
//
// Same walk over the channels as the generic kernels in lrn.cpp (read the comment there), 8 pixels
// per vector; the last block of a task is loaded and stored with masks, so every pixel goes
// through the same vector code. s^(-beta): the closed forms for beta in {0, 0.5, 0.75, 1} use the
// correctly rounded vsqrtps / vdivps; any other beta widens to double lanes and evaluates
// exp(-beta * log(s)) there (log from exponent and a series in (m - 1) / (m + 1), exp from 2^n and
// a Taylor series of degree 11, both about 1e-13 relative), then rounds once to float.
//
// Only raw pointers and file-local helpers here: an inline function from a shared header, compiled
// with AVX2 flags in this file, could be the copy the linker keeps for the generic code too.
#include <immintrin.h>

#include <cstdint>

namespace convkit {
namespace avx2 {
namespace {

enum : int { kPowOne = 0, kPowInvSqrt = 1, kPow075 = 2, kPowInv = 3, kPowGeneral = 4 };  // as lrn.cpp

inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Lanes [0, n) of a block (n < 8 only in a task's last block).
inline __m256i lanes_below(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256 load_n(const float* p, int64_t n, __m256i mask) {
  return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);  // masked lanes read as 0, never fault
}
inline void store_n(float* p, __m256 v, int64_t n, __m256i mask) {
  if (n >= 8) _mm256_storeu_ps(p, v);
  else _mm256_maskstore_ps(p, mask, v);
}

// ---- exp and log in double lanes ----------------------------------------------------------------

const double kMagic = 6755399441055744.0;  // 2^52 + 2^51: adding it puts a small integer in the low bits

// e^t for t in [-708, 708]: t = n ln2 + r with |r| <= ln2 / 2, e^r by Taylor to r^11 (next term
// < 7e-15 relative), 2^n written into the exponent field.
inline __m256d exp_pd(__m256d t) {
  const __m256d n = _mm256_round_pd(_mm256_mul_pd(t, _mm256_set1_pd(1.4426950408889634)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // ln2 split so that n * hi is exact (hi has 40 significant bits, |n| < 2^11)
  __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(0x1.62e42fefa4000p-1), t);
  r = _mm256_fnmadd_pd(n, _mm256_set1_pd(-1.7239444525614835e-13), r);
  __m256d p = _mm256_set1_pd(1.0 / 39916800.0);  // 1/11!
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 3628800.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 362880.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 40320.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 5040.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 720.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 120.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 24.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0 / 6.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.5));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
  const __m256d magic = _mm256_set1_pd(kMagic);
  const __m256i ni = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(n, magic)), _mm256_castpd_si256(magic));
  const __m256i two_n = _mm256_slli_epi64(_mm256_add_epi64(ni, _mm256_set1_epi64x(1023)), 52);
  return _mm256_mul_pd(p, _mm256_castsi256_pd(two_n));
}

// ln(s) for positive normal s: s = m 2^e with m in [sqrt(1/2), sqrt(2)), f = (m - 1) / (m + 1),
// ln m = 2 atanh f = 2 f (1 + f^2/3 + f^4/5 + ... + f^14/15) (|f| <= 0.172; next term < 2e-14).
inline __m256d log_pd(__m256d s) {
  const __m256i bits = _mm256_castpd_si256(s);
  __m256i e = _mm256_sub_epi64(_mm256_srli_epi64(bits, 52), _mm256_set1_epi64x(1023));
  __m256d m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0x000FFFFFFFFFFFFFLL)),
                                                  _mm256_set1_epi64x(0x3FF0000000000000LL)));
  const __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(1.4142135623730951), _CMP_GT_OQ);
  m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
  e = _mm256_sub_epi64(e, _mm256_castpd_si256(big));  // big lanes are all ones = -1
  const __m256d magic = _mm256_set1_pd(kMagic);
  const __m256d ed = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(e, _mm256_castpd_si256(magic))), magic);
  const __m256d one = _mm256_set1_pd(1.0);
  const __m256d f = _mm256_div_pd(_mm256_sub_pd(m, one), _mm256_add_pd(m, one));
  const __m256d f2 = _mm256_mul_pd(f, f);
  __m256d q = _mm256_set1_pd(1.0 / 15.0);
  q = _mm256_fmadd_pd(q, f2, _mm256_set1_pd(1.0 / 13.0));
  q = _mm256_fmadd_pd(q, f2, _mm256_set1_pd(1.0 / 11.0));
  q = _mm256_fmadd_pd(q, f2, _mm256_set1_pd(1.0 / 9.0));
  q = _mm256_fmadd_pd(q, f2, _mm256_set1_pd(1.0 / 7.0));
  q = _mm256_fmadd_pd(q, f2, _mm256_set1_pd(1.0 / 5.0));
  q = _mm256_fmadd_pd(q, f2, _mm256_set1_pd(1.0 / 3.0));
  q = _mm256_fmadd_pd(q, f2, one);
  const __m256d ln_m = _mm256_mul_pd(_mm256_add_pd(f, f), q);
  return _mm256_fmadd_pd(ed, _mm256_set1_pd(0.6931471805599453), ln_m);
}

inline __m256d pow_neg_pd(__m256d s, __m256d neg_beta) {
  __m256d t = _mm256_mul_pd(neg_beta, log_pd(s));
  t = _mm256_min_pd(_mm256_max_pd(t, _mm256_set1_pd(-708.0)), _mm256_set1_pd(708.0));
  return exp_pd(t);
}

// s^(-beta) for beta > 0 not in the closed forms. Float s is a normal double once widened; the
// special values are set afterwards: s == 0 -> inf, s == inf -> 0, s < 0 or NaN -> NaN.
inline __m256 pow_neg_general(__m256 s, __m256d neg_beta) {
  const __m256d lo = pow_neg_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(s)), neg_beta);
  const __m256d hi = pow_neg_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)), neg_beta);
  __m256 r = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
  const __m256 zero = _mm256_setzero_ps(), inf = _mm256_set1_ps(__builtin_huge_valf());
  r = _mm256_blendv_ps(r, inf, _mm256_cmp_ps(s, zero, _CMP_EQ_OQ));
  r = _mm256_blendv_ps(r, zero, _mm256_cmp_ps(s, inf, _CMP_EQ_OQ));
  r = _mm256_blendv_ps(r, _mm256_set1_ps(__builtin_nanf("")), _mm256_cmp_ps(s, zero, _CMP_NGE_UQ));
  return r;
}

template <int MODE>
inline __m256 pow_neg(__m256 s, __m256d neg_beta) {
  const __m256 one = _mm256_set1_ps(1.0f);
  if (MODE == kPowOne) return one;
  if (MODE == kPowInvSqrt) return _mm256_div_ps(one, _mm256_sqrt_ps(s));
  if (MODE == kPow075) return _mm256_div_ps(one, _mm256_sqrt_ps(_mm256_mul_ps(s, _mm256_sqrt_ps(s))));
  if (MODE == kPowInv) return _mm256_div_ps(one, s);
  return pow_neg_general(s, neg_beta);
}

template <int MODE>
inline __m256 pow_neg_inv(__m256 s, __m256 inv, __m256d neg_beta) {
  if (MODE == kPowOne) return _mm256_set1_ps(1.0f);
  if (MODE == kPowInvSqrt) return _mm256_sqrt_ps(inv);
  if (MODE == kPow075) return _mm256_sqrt_ps(_mm256_mul_ps(inv, _mm256_sqrt_ps(inv)));
  if (MODE == kPowInv) return inv;
  return pow_neg_general(s, neg_beta);
}

// ---- the task kernels ---------------------------------------------------------------------------

template <int MODE>
void forward_chunk(const float* x, float* y, float* scale, int64_t C, int64_t HW, int64_t p0, int64_t len,
                   int64_t size, float alpha_over_n, float k, double beta, float* ring, int64_t stride) {
  const int64_t before = size / 2, after = (size - 1) / 2, R = imin(size, C);
  const __m256i tail = lanes_below(len % 8);
  const __m256 van = _mm256_set1_ps(alpha_over_n), vk = _mm256_set1_ps(k);
  const __m256d neg_beta = _mm256_set1_pd(-beta);
  auto square_into_ring = [&](int64_t c) {
    const float* xc = x + c * HW + p0;
    float* r = ring + (c % R) * stride;
    for (int64_t v = 0; v < len; v += 8) {
      const __m256 a = load_n(xc + v, len - v, tail);
      _mm256_storeu_ps(r + v, _mm256_mul_ps(a, a));  // the ring row is padded to a multiple of 8
    }
  };
  for (int64_t c = 0; c < imin(after, C); ++c) square_into_ring(c);
  for (int64_t c = 0; c < C; ++c) {
    if (c + after < C) square_into_ring(c + after);
    const int64_t lo = imax(c - before, 0), count = imin(c + after, C - 1) - lo + 1;
    const int64_t slot0 = lo % R;
    const float* xc = x + c * HW + p0;
    float* yc = y + c * HW + p0;
    float* sc = scale + c * HW + p0;
    for (int64_t v = 0; v < len; v += 8) {
      __m256 acc = _mm256_loadu_ps(ring + slot0 * stride + v);
      int64_t slot = slot0;
      for (int64_t i = 1; i < count; ++i) {  // channels lo + 1 .. hi, ascending
        slot = slot + 1 == R ? 0 : slot + 1;
        acc = _mm256_add_ps(acc, _mm256_loadu_ps(ring + slot * stride + v));
      }
      const __m256 s = _mm256_fmadd_ps(van, acc, vk);
      store_n(sc + v, s, len - v, tail);
      const __m256 xv = load_n(xc + v, len - v, tail);
      store_n(yc + v, _mm256_mul_ps(xv, pow_neg<MODE>(s, neg_beta)), len - v, tail);
    }
  }
}

template <int MODE>
void backward_chunk(const float* x, const float* y, const float* scale, const float* dy, float* dx, int64_t C,
                    int64_t HW, int64_t p0, int64_t len, int64_t size, float coef, double beta, float* tring,
                    float* pring, int64_t stride) {
  const int64_t before = size / 2, after = (size - 1) / 2, R = imin(size, C);
  const __m256i tail = lanes_below(len % 8);
  const __m256 vcoef = _mm256_set1_ps(coef), one = _mm256_set1_ps(1.0f);
  const __m256d neg_beta = _mm256_set1_pd(-beta);
  // t[c] = dy[c] y[c] / s[c] and p[c] = s[c]^(-beta) into the rings
  auto ratio_into_ring = [&](int64_t c) {
    const int64_t off = c * HW + p0;
    float* t = tring + (c % R) * stride;
    float* pw = pring + (c % R) * stride;
    for (int64_t v = 0; v < len; v += 8) {
      const int64_t n = len - v;
      const __m256 s = load_n(scale + off + v, n, tail);
      const __m256 inv = _mm256_div_ps(one, s);
      const __m256 g = load_n(dy + off + v, n, tail), yv = load_n(y + off + v, n, tail);
      _mm256_storeu_ps(t + v, _mm256_mul_ps(_mm256_mul_ps(g, yv), inv));
      _mm256_storeu_ps(pw + v, pow_neg_inv<MODE>(s, inv, neg_beta));
    }
  };
  for (int64_t c = 0; c < imin(before, C); ++c) ratio_into_ring(c);
  for (int64_t c = 0; c < C; ++c) {
    if (c + before < C) ratio_into_ring(c + before);
    // the mirrored window: c' in [c - (n-1)/2, c + n/2]
    const int64_t lo = imax(c - after, 0), count = imin(c + before, C - 1) - lo + 1;
    const int64_t slot0 = lo % R;
    const int64_t off = c * HW + p0;
    const float* pw = pring + (c % R) * stride;
    for (int64_t v = 0; v < len; v += 8) {
      const int64_t n = len - v;
      __m256 acc = _mm256_loadu_ps(tring + slot0 * stride + v);
      int64_t slot = slot0;
      for (int64_t i = 1; i < count; ++i) {
        slot = slot + 1 == R ? 0 : slot + 1;
        acc = _mm256_add_ps(acc, _mm256_loadu_ps(tring + slot * stride + v));
      }
      const __m256 g = load_n(dy + off + v, n, tail), xv = load_n(x + off + v, n, tail);
      const __m256 first = _mm256_mul_ps(g, _mm256_loadu_ps(pw + v));
      store_n(dx + off + v, _mm256_fnmadd_ps(_mm256_mul_ps(vcoef, xv), acc, first), n, tail);
    }
  }
}

}  // namespace

void lrn_forward_chunk_f32(const float* x, float* y, float* scale, int64_t C, int64_t HW, int64_t p0, int64_t len,
                           int64_t size, float alpha_over_n, float k, int mode, double beta, float* ring,
                           int64_t stride) {
  switch (mode) {
    case kPowOne: return forward_chunk<kPowOne>(x, y, scale, C, HW, p0, len, size, alpha_over_n, k, beta, ring, stride);
    case kPowInvSqrt:
      return forward_chunk<kPowInvSqrt>(x, y, scale, C, HW, p0, len, size, alpha_over_n, k, beta, ring, stride);
    case kPow075: return forward_chunk<kPow075>(x, y, scale, C, HW, p0, len, size, alpha_over_n, k, beta, ring, stride);
    case kPowInv: return forward_chunk<kPowInv>(x, y, scale, C, HW, p0, len, size, alpha_over_n, k, beta, ring, stride);
    default:
      return forward_chunk<kPowGeneral>(x, y, scale, C, HW, p0, len, size, alpha_over_n, k, beta, ring, stride);
  }
}

void lrn_backward_chunk_f32(const float* x, const float* y, const float* scale, const float* dy, float* dx, int64_t C,
                            int64_t HW, int64_t p0, int64_t len, int64_t size, float coef, int mode, double beta,
                            float* tring, float* pring, int64_t stride) {
  switch (mode) {
    case kPowOne:
      return backward_chunk<kPowOne>(x, y, scale, dy, dx, C, HW, p0, len, size, coef, beta, tring, pring, stride);
    case kPowInvSqrt:
      return backward_chunk<kPowInvSqrt>(x, y, scale, dy, dx, C, HW, p0, len, size, coef, beta, tring, pring, stride);
    case kPow075:
      return backward_chunk<kPow075>(x, y, scale, dy, dx, C, HW, p0, len, size, coef, beta, tring, pring, stride);
    case kPowInv:
      return backward_chunk<kPowInv>(x, y, scale, dy, dx, C, HW, p0, len, size, coef, beta, tring, pring, stride);
    default:
      return backward_chunk<kPowGeneral>(x, y, scale, dy, dx, C, HW, p0, len, size, coef, beta, tring, pring, stride);
  }
}

}  // namespace avx2
}  // namespace convkit
