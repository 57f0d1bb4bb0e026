// CPU kernels for sparse couplings stored in ELL layout, called from JAX through the XLA FFI.
//
// Layout: receiver k reads senders index[k, 0 .. count[k]) with weights values[k, ...]; slots at
// and beyond count[k] are padding and are never read. States are passed transposed, (units, batch),
// so the batch values of one unit are contiguous and the inner loops vectorise. Indices must lie in
// [0, senders): the Python side validates them when a coupling is built.
//
// The library compiles with -march=native. With AVX-512 one register contains 16 batch values, and
// with AVX2 and FMA two do. Otherwise plain loops run. Either way a block of 16 batch values stays in
// registers across a receiver's whole fan-in. On a 2-core x86-64 machine at batch 16 the AVX2 path
// measured 3.6x (1%-dense 2000x2000) and 5x (10%-dense 784x2000) faster than accumulating through
// memory. Receivers whose update signal is zero for the whole batch (every sample already stable
// under the perceptron rule) get zero increments without reading their senders.
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DARNAX_AVX2 1
#if defined(__AVX512F__)
#define DARNAX_AVX512 1
#endif
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Ell {
  int64_t senders, batch, receivers, slots;
};

// row[0 .. batch) = sum_f w[f] * x[idx[f], :] for one receiver.
void FieldOfReceiver(const float* x, const int32_t* idx, const float* w, int64_t n, int64_t batch,
                     float* row) {
  int64_t b0 = 0;
#ifdef DARNAX_AVX512
  for (; b0 + 16 <= batch; b0 += 16) {
    // Four independent accumulators hide the FMA latency.
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t f = 0;
    for (; f + 4 <= n; f += 4) {
      a0 = _mm512_fmadd_ps(_mm512_set1_ps(w[f]), _mm512_loadu_ps(x + static_cast<int64_t>(idx[f]) * batch + b0), a0);
      a1 = _mm512_fmadd_ps(_mm512_set1_ps(w[f + 1]), _mm512_loadu_ps(x + static_cast<int64_t>(idx[f + 1]) * batch + b0), a1);
      a2 = _mm512_fmadd_ps(_mm512_set1_ps(w[f + 2]), _mm512_loadu_ps(x + static_cast<int64_t>(idx[f + 2]) * batch + b0), a2);
      a3 = _mm512_fmadd_ps(_mm512_set1_ps(w[f + 3]), _mm512_loadu_ps(x + static_cast<int64_t>(idx[f + 3]) * batch + b0), a3);
    }
    for (; f < n; ++f) {
      a0 = _mm512_fmadd_ps(_mm512_set1_ps(w[f]), _mm512_loadu_ps(x + static_cast<int64_t>(idx[f]) * batch + b0), a0);
    }
    _mm512_storeu_ps(row + b0, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  }
#endif
#ifdef DARNAX_AVX2
  for (; b0 + 16 <= batch; b0 += 16) {
    // Two independent accumulator pairs hide the FMA latency.
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps();
    int64_t f = 0;
    for (; f + 2 <= n; f += 2) {
      const float* s0 = x + static_cast<int64_t>(idx[f]) * batch + b0;
      const float* s1 = x + static_cast<int64_t>(idx[f + 1]) * batch + b0;
      const __m256 w0 = _mm256_set1_ps(w[f]);
      const __m256 w1 = _mm256_set1_ps(w[f + 1]);
      a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(s0), a0);
      a1 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(s0 + 8), a1);
      c0 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(s1), c0);
      c1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(s1 + 8), c1);
    }
    if (f < n) {
      const float* s0 = x + static_cast<int64_t>(idx[f]) * batch + b0;
      const __m256 w0 = _mm256_set1_ps(w[f]);
      a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(s0), a0);
      a1 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(s0 + 8), a1);
    }
    _mm256_storeu_ps(row + b0, _mm256_add_ps(a0, c0));
    _mm256_storeu_ps(row + b0 + 8, _mm256_add_ps(a1, c1));
  }
#endif
  if (b0 < batch) {
    std::memset(row + b0, 0, sizeof(float) * (batch - b0));
    for (int64_t f = 0; f < n; ++f) {
      const float* src = x + static_cast<int64_t>(idx[f]) * batch;
      for (int64_t b = b0; b < batch; ++b) row[b] += w[f] * src[b];
    }
  }
}

// row[b] = sign((row[b] + self * own[b]) + fixed[b]) with sign(h) = +1 for h >= 0, else -1.
void SignUpdate(const float* own, const float* fixed, float self, int64_t batch, float* row) {
  int64_t b = 0;
#ifdef DARNAX_AVX512
  const __m512 coupling = _mm512_set1_ps(self), plus = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f);
  for (; b + 16 <= batch; b += 16) {
    const __m512 own_part = _mm512_mul_ps(coupling, _mm512_loadu_ps(own + b));
    const __m512 h = _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(row + b), own_part), _mm512_loadu_ps(fixed + b));
    _mm512_storeu_ps(row + b, _mm512_mask_blend_ps(_mm512_cmp_ps_mask(h, _mm512_setzero_ps(), _CMP_GE_OQ), minus, plus));
  }
#endif
  for (; b < batch; ++b) {
    const float h = (row[b] + self * own[b]) + fixed[b];
    row[b] = h >= 0.0f ? 1.0f : -1.0f;
  }
}

// Returns true when every sig[b] compares equal to zero.
bool IsZero(const float* sig, int64_t batch) {
  for (int64_t b = 0; b < batch; ++b) {
    if (sig[b] != 0.0f) return false;
  }
  return true;
}

// Returns sum_b src[b] * sig[b].
float Dot(const float* src, const float* sig, int64_t batch) {
  int64_t b0 = 0;
  float total = 0.0f;
#ifdef DARNAX_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; b0 + 16 <= batch; b0 += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(src + b0), _mm256_loadu_ps(sig + b0), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(src + b0 + 8), _mm256_loadu_ps(sig + b0 + 8), a1);
  }
  const __m256 sum8 = _mm256_add_ps(a0, a1);
  const __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(sum8), _mm256_extractf128_ps(sum8, 1));
  const __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  total = _mm_cvtss_f32(_mm_add_ss(sum2, _mm_shuffle_ps(sum2, sum2, 1)));
#endif
  for (int64_t b = b0; b < batch; ++b) total += src[b] * sig[b];
  return total;
}

#ifdef DARNAX_AVX2
// Returns the 8 horizontal sums of a[0..8) as one vector, in order.
inline __m256 HorizontalSums8(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]);
  const __m256 t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]);
  const __m256 t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1);
  const __m256 u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}
#endif

// out[f] = sum_b x[idx[f], b] * sig[b] for f < n. With AVX2, eight slots share one reduction.
void IncrementsOfReceiver(const float* x, const int32_t* idx, const float* sig, int64_t n, int64_t batch,
                          float* out) {
  int64_t f = 0;
#ifdef DARNAX_AVX2
  const int64_t blocked = batch - batch % 16;
  for (; f + 8 <= n; f += 8) {
    __m256 acc[8];
#ifdef DARNAX_AVX512
    __m512 wide[8];
    for (int j = 0; j < 8; ++j) wide[j] = _mm512_setzero_ps();
    for (int64_t b0 = 0; b0 < blocked; b0 += 16) {
      const __m512 s = _mm512_loadu_ps(sig + b0);
      for (int j = 0; j < 8; ++j) {
        wide[j] = _mm512_fmadd_ps(_mm512_loadu_ps(x + static_cast<int64_t>(idx[f + j]) * batch + b0), s, wide[j]);
      }
    }
    // Fold each 16-lane sum to 8 lanes, then reduce eight of them at once.
    for (int j = 0; j < 8; ++j) {
      const __m256 low = _mm512_castps512_ps256(wide[j]);
      const __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(wide[j]), 1));
      acc[j] = _mm256_add_ps(low, high);
    }
#else
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t b0 = 0; b0 < blocked; b0 += 16) {
      const __m256 s0 = _mm256_loadu_ps(sig + b0);
      const __m256 s1 = _mm256_loadu_ps(sig + b0 + 8);
      for (int j = 0; j < 8; ++j) {
        const float* src = x + static_cast<int64_t>(idx[f + j]) * batch + b0;
        acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(src), s0, acc[j]);
        acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(src + 8), s1, acc[j]);
      }
    }
#endif
    _mm256_storeu_ps(out + f, HorizontalSums8(acc));
    for (int64_t b = blocked; b < batch; ++b) {
      for (int j = 0; j < 8; ++j) out[f + j] += x[static_cast<int64_t>(idx[f + j]) * batch + b] * sig[b];
    }
  }
#endif
  for (; f < n; ++f) out[f] = Dot(x + static_cast<int64_t>(idx[f]) * batch, sig, batch);
}

ffi::Error CheckShapes(const ffi::Buffer<ffi::F32>& xt, const ffi::Buffer<ffi::S32>& index, Ell* shape) {
  const auto xdims = xt.dimensions();
  const auto idims = index.dimensions();
  if (xdims.size() != 2 || idims.size() != 2) {
    return ffi::Error::InvalidArgument("darnax ELL kernels expect 2-D operands");
  }
  *shape = Ell{xdims[0], xdims[1], idims[0], idims[1]};
  return ffi::Error::Success();
}

}  // namespace

// out_t[k, :] = sum_f values[k, f] * xt[index[k, f], :]
static ffi::Error EllMatmulImpl(ffi::Buffer<ffi::F32> xt, ffi::Buffer<ffi::S32> index,
                                ffi::Buffer<ffi::F32> values, ffi::Buffer<ffi::S32> count,
                                ffi::ResultBuffer<ffi::F32> out_t) {
  Ell shape;
  if (auto error = CheckShapes(xt, index, &shape); error.failure()) return error;
  const float* x = xt.typed_data();
  const int32_t* idx = index.typed_data();
  const float* w = values.typed_data();
  const int32_t* cnt = count.typed_data();
  float* o = out_t->typed_data();
  for (int64_t k = 0; k < shape.receivers; ++k) {
    const int64_t n = cnt[k] < shape.slots ? cnt[k] : shape.slots;
    FieldOfReceiver(x, idx + k * shape.slots, w + k * shape.slots, n, shape.batch, o + k * shape.batch);
  }
  return ffi::Error::Success();
}

// inc[k, f] = sum_b xt[index[k, f], b] * signal_t[k, b] for f < count[k], else 0.
static ffi::Error EllOuterImpl(ffi::Buffer<ffi::F32> xt, ffi::Buffer<ffi::S32> index,
                               ffi::Buffer<ffi::F32> signal_t, ffi::Buffer<ffi::S32> count,
                               ffi::ResultBuffer<ffi::F32> inc) {
  Ell shape;
  if (auto error = CheckShapes(xt, index, &shape); error.failure()) return error;
  const float* x = xt.typed_data();
  const int32_t* idx = index.typed_data();
  const float* s = signal_t.typed_data();
  const int32_t* cnt = count.typed_data();
  float* o = inc->typed_data();
  for (int64_t k = 0; k < shape.receivers; ++k) {
    const float* sig = s + k * shape.batch;
    float* out = o + k * shape.slots;
    int64_t n = cnt[k] < shape.slots ? cnt[k] : shape.slots;
    if (IsZero(sig, shape.batch)) n = 0;
    IncrementsOfReceiver(x, idx + k * shape.slots, sig, n, shape.batch, out);
    for (int64_t f = n; f < shape.slots; ++f) out[f] = 0.0f;
  }
  return ffi::Error::Success();
}

// One sign sweep of a square coupling in the transposed layout, fused with the self-coupling and
// the constant field: out_t[k, :] = sign((sum_f values[k, f] * st[index[k, f], :] + self[k] * st[k, :])
// + const_t[k, :]), with sign(h) = +1 for h >= 0 and -1 otherwise (NaN gives -1).
static ffi::Error EllSweepImpl(ffi::Buffer<ffi::F32> st, ffi::Buffer<ffi::S32> index,
                               ffi::Buffer<ffi::F32> values, ffi::Buffer<ffi::S32> count,
                               ffi::Buffer<ffi::F32> const_t, ffi::Buffer<ffi::F32> self,
                               ffi::ResultBuffer<ffi::F32> out_t) {
  Ell shape;
  if (auto error = CheckShapes(st, index, &shape); error.failure()) return error;
  if (shape.senders != shape.receivers || const_t.element_count() != st.element_count() ||
      self.element_count() != shape.receivers) {
    return ffi::Error::InvalidArgument("darnax ELL sweep expects a square coupling and matching fields");
  }
  const float* x = st.typed_data();
  const int32_t* idx = index.typed_data();
  const float* w = values.typed_data();
  const int32_t* cnt = count.typed_data();
  const float* c = const_t.typed_data();
  const float* d = self.typed_data();
  float* o = out_t->typed_data();
  const int64_t batch = shape.batch;
  for (int64_t k = 0; k < shape.receivers; ++k) {
    const int64_t n = cnt[k] < shape.slots ? cnt[k] : shape.slots;
    float* row = o + k * batch;
    FieldOfReceiver(x, idx + k * shape.slots, w + k * shape.slots, n, batch, row);
    SignUpdate(x + k * batch, c + k * batch, d[k], batch, row);
  }
  return ffi::Error::Success();
}

// Both kernels take (states, index, values or signal, count) and return one f32 buffer.
#define DARNAX_ELL_BINDING                 \
  ffi::Ffi::Bind()                         \
      .Arg<ffi::Buffer<ffi::F32>>()        \
      .Arg<ffi::Buffer<ffi::S32>>()        \
      .Arg<ffi::Buffer<ffi::F32>>()        \
      .Arg<ffi::Buffer<ffi::S32>>()        \
      .Ret<ffi::Buffer<ffi::F32>>()

XLA_FFI_DEFINE_HANDLER_SYMBOL(DarnaxEllMatmul, EllMatmulImpl, DARNAX_ELL_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(DarnaxEllOuter, EllOuterImpl, DARNAX_ELL_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(DarnaxEllSweep, EllSweepImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
