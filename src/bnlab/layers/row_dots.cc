// Σ_u W ⊙ P and W s, row by row: the input BN's ∂γ and ∂β in layers/folded_dense (docstring:
// layers/native.py). An XLA FFI handler for the CPU; every array float32, row-major.
//
//   W, P (R, U) with R = K · D rows (any leading axes: K seeds of D rows), s (K, U)
//   g[r] = Σ_u W[r, u] · P[r, u]        b[r] = Σ_u W[r, u] · s[r / D, u]        g, b (R)
//
// One pass reads W and P once (XLA's two kernels read W twice, at a third of the copy rate).
// The rows in chunks, on two threads (parallel.h).

#include <cstdint>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

static void Rows(const float* W, const float* P, const float* S, float* G, float* B,
                 int64_t D, int64_t U, int64_t first, int64_t last) {
  for (int64_t r = first; r < last; ++r) {
    const float* w = W + r * U;
    const float* p = P + r * U;
    const float* s = S + (r / D) * U;
    float g = 0.0f, b = 0.0f;
    for (int64_t u = 0; u < U; ++u) {
      g += w[u] * p[u];
      b += w[u] * s[u];
    }
    G[r] = g;
    B[r] = b;
  }
}

static ffi::Error RowDots(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> p,
                          ffi::Buffer<ffi::F32> s, ffi::ResultBuffer<ffi::F32> g,
                          ffi::ResultBuffer<ffi::F32> b) {
  auto dims = w.dimensions();
  const int64_t rank = dims.size();
  if (rank < 2 || p.element_count() != w.element_count()) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "row_dots: W and P must be (..., D, U)");
  }
  const int64_t U = dims[rank - 1], D = dims[rank - 2];
  const int64_t rows = U ? w.element_count() / U : 0;
  if (D == 0 || s.element_count() != rows / D * U) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "row_dots: s must be (..., U)");
  }
  const float *W = w.typed_data(), *P = p.typed_data(), *S = s.typed_data();
  float *G = g->typed_data(), *B = b->typed_data();
  const int64_t chunks = 8;
  bnlab::ParallelFor(pool, chunks, [&](int64_t i) {
    Rows(W, P, S, G, B, D, U, rows * i / chunks, rows * (i + 1) / chunks);
  });
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(BnlabRowDots, RowDots,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
