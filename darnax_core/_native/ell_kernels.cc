// CPU kernels for sparse couplings stored in ELL layout, called from JAX through the XLA FFI.
//
// Indices must lie in [0, senders): the Python side validates them when a coupling is built.
//
// Layout: receiver k reads senders index[k, 0 .. count[k]) with weights values[k, ...]; slots at
// and beyond count[k] are padding and are never read. States are passed transposed, (units, batch),
// so the batch values of one unit are contiguous and the inner loops vectorise.
#include <cstdint>
#include <cstring>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// Batch values processed together; 16 floats fill two 256-bit registers.
constexpr int64_t kChunk = 16;

// out_t[k, :] = sum_f values[k, f] * xt[index[k, f], :]
static ffi::Error EllMatmulImpl(ffi::Buffer<ffi::F32> xt, ffi::Buffer<ffi::S32> index,
                                ffi::Buffer<ffi::F32> values, ffi::Buffer<ffi::S32> count,
                                ffi::ResultBuffer<ffi::F32> out_t) {
  const auto xdims = xt.dimensions();
  const auto idims = index.dimensions();
  if (xdims.size() != 2 || idims.size() != 2) {
    return ffi::Error::InvalidArgument("darnax_ell_matmul expects 2-D operands");
  }
  const int64_t batch = xdims[1];
  const int64_t receivers = idims[0];
  const int64_t slots = idims[1];
  const float* x = xt.typed_data();
  const int32_t* idx = index.typed_data();
  const float* w = values.typed_data();
  const int32_t* cnt = count.typed_data();
  float* o = out_t->typed_data();
  // Accumulating in the output row is about twice as fast here as register blocking, measured
  // with g++ 12 -O3 -march=native on x86-64 at batch 16.
  for (int64_t k = 0; k < receivers; ++k) {
    float* row = o + k * batch;
    std::memset(row, 0, sizeof(float) * batch);
    const int64_t n = cnt[k] < slots ? cnt[k] : slots;
    for (int64_t f = 0; f < n; ++f) {
      const float weight = w[k * slots + f];
      const float* src = x + static_cast<int64_t>(idx[k * slots + f]) * batch;
      for (int64_t b = 0; b < batch; ++b) row[b] += weight * src[b];
    }
  }
  return ffi::Error::Success();
}

// inc[k, f] = sum_b xt[index[k, f], b] * signal_t[k, b] for f < count[k], else 0.
static ffi::Error EllOuterImpl(ffi::Buffer<ffi::F32> xt, ffi::Buffer<ffi::S32> index,
                               ffi::Buffer<ffi::F32> signal_t, ffi::Buffer<ffi::S32> count,
                               ffi::ResultBuffer<ffi::F32> inc) {
  const auto xdims = xt.dimensions();
  const auto idims = index.dimensions();
  if (xdims.size() != 2 || idims.size() != 2) {
    return ffi::Error::InvalidArgument("darnax_ell_outer expects 2-D operands");
  }
  const int64_t batch = xdims[1];
  const int64_t receivers = idims[0];
  const int64_t slots = idims[1];
  const float* x = xt.typed_data();
  const int32_t* idx = index.typed_data();
  const float* s = signal_t.typed_data();
  const int32_t* cnt = count.typed_data();
  float* o = inc->typed_data();
  for (int64_t k = 0; k < receivers; ++k) {
    const float* sig = s + k * batch;
    float* out = o + k * slots;
    const int64_t n = cnt[k] < slots ? cnt[k] : slots;
    for (int64_t f = 0; f < slots; ++f) {
      if (f >= n) {
        out[f] = 0.0f;
        continue;
      }
      const float* src = x + static_cast<int64_t>(idx[k * slots + f]) * batch;
      float partial[kChunk] = {0.0f};
      int64_t b0 = 0;
      for (; b0 + kChunk <= batch; b0 += kChunk) {
        for (int64_t b = 0; b < kChunk; ++b) partial[b] += src[b0 + b] * sig[b0 + b];
      }
      float acc = 0.0f;
      for (int64_t b = 0; b < kChunk; ++b) acc += partial[b];
      for (int64_t b = b0; b < batch; ++b) acc += src[b] * sig[b];
      out[f] = acc;
    }
  }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(DarnaxEllMatmul, EllMatmulImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(DarnaxEllOuter, EllOuterImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
