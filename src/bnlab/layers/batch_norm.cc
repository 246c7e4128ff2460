// Batch Normalization's training-mode forward and backward passes, each one call (docstring:
// layers/native.py). XLA FFI handlers for the CPU; every array float32, row-major.
//
//   x, y, dy, dx (…, R, C): R rows (every reduced axis flattened), C channels; any leading axes
//   (K seeds under jax.vmap) are groups, each with its own statistics. μ, σ², γ, β (…, C).
//
//   forward    μ = o + S₁ / R       σ² = S₂ / R − (S₁ / R)²        (biased)
//              S₁ = Σ_r (x − o),  S₂ = Σ_r (x − o)²: one pass over x shifted by o, the mean of
//              its first ≤ kBlock rows, so the sums are of the data's own scale whatever its
//              offset (digits are lost only as ((μ − o) / σ)² grows, not as (μ / σ)²)
//              y = γ (x − μ) i + β,  i = 1 / √(σ² + ε)
//   backward   dβ = Σ_r dy          dγ = Σ_r dy (x − μ) i
//              dx = γ i (dy − (dβ + (x − μ) i dγ) / R) + dμ / R + 2 dσ² (x − μ) / R
//
// dμ and dσ² are the cotangents of the statistics the forward pass returns (zero where only y
// is used). dx is affine in dy and x per channel, so its pass is dx = A dy + B x + D.
// Sums over rows run in float over blocks of kBlock rows, the blocks added in double: the error
// grows with kBlock + R / kBlock, not R. R = 0 gives μ = σ² = 0 (the divisor is max(R, 1)).
// Each pass reads the rows in order, four at a time, into per-channel sums. Two threads
// (parallel.h): a call of many values and C ≥ 32 gives half the channels to each (one fork for
// the call); a larger call splits the rows into chunks (a fork per pass). A narrow C is read as
// wide rows of k C ≥ 64 values (k rows side by side), so that each loop over a row is long
// enough to vectorize; the wide sums are folded back into C channels.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kBlock = 128;
constexpr int64_t kChunks = 8;          // of a large call's rows, for two threads
constexpr int64_t kLarge = 1 << 17;     // values from which a fork per pass pays (bench/)
constexpr int64_t kSplit = 1 << 14;     // values from which one fork by channels pays
constexpr int64_t kSplitChannels = 16;  // a cache line of floats
constexpr int64_t kWide = 64;

// Rows of `width` values, `stride` floats apart. restrict: no output aliases an input, so each
// loop over a row vectorizes.

// s[c] += Σ_r (x[r, c] − o[c]);  t[c] += Σ_r (x[r, c] − o[c])²
void SumShifted(float* __restrict s, float* __restrict t, const float* __restrict x,
                const float* __restrict o, int64_t rows, int64_t stride, int64_t width) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4, x += 4 * stride) {
    for (int64_t c = 0; c < width; ++c) {
      const float d0 = x[c] - o[c], d1 = x[stride + c] - o[c];
      const float d2 = x[2 * stride + c] - o[c], d3 = x[3 * stride + c] - o[c];
      s[c] += (d0 + d1) + (d2 + d3);
      t[c] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
    }
  }
  for (; r < rows; ++r, x += stride) {
    for (int64_t c = 0; c < width; ++c) {
      const float d = x[c] - o[c];
      s[c] += d;
      t[c] += d * d;
    }
  }
}

// s[c] += Σ_r dy[r, c];  t[c] += Σ_r dy[r, c] (x[r, c] − μ[c])
void SumGradients(float* __restrict s, float* __restrict t, const float* __restrict dy,
                  const float* __restrict x, const float* __restrict mu, int64_t rows,
                  int64_t stride, int64_t width) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4, x += 4 * stride, dy += 4 * stride) {
    for (int64_t c = 0; c < width; ++c) {
      const float g0 = dy[c], g1 = dy[stride + c], g2 = dy[2 * stride + c];
      const float g3 = dy[3 * stride + c];
      s[c] += (g0 + g1) + (g2 + g3);
      t[c] += (g0 * (x[c] - mu[c]) + g1 * (x[stride + c] - mu[c])) +
              (g2 * (x[2 * stride + c] - mu[c]) + g3 * (x[3 * stride + c] - mu[c]));
    }
  }
  for (; r < rows; ++r, x += stride, dy += stride) {
    for (int64_t c = 0; c < width; ++c) {
      s[c] += dy[c];
      t[c] += dy[c] * (x[c] - mu[c]);
    }
  }
}

// out[r, c] = a[c] x[r, c] + b[c]
void Affine(float* __restrict out, const float* __restrict x, const float* __restrict a,
            const float* __restrict b, int64_t rows, int64_t stride, int64_t width) {
  for (int64_t r = 0; r < rows; ++r, x += stride, out += stride) {
    for (int64_t c = 0; c < width; ++c) out[c] = a[c] * x[c] + b[c];
  }
}

// out[r, c] = a[c] dy[r, c] + b[c] x[r, c] + d[c]
void Affine2(float* __restrict out, const float* __restrict dy, const float* __restrict x,
             const float* __restrict a, const float* __restrict b, const float* __restrict d,
             int64_t rows, int64_t stride, int64_t width) {
  for (int64_t r = 0; r < rows; ++r, x += stride, dy += stride, out += stride) {
    for (int64_t c = 0; c < width; ++c) out[c] = a[c] * dy[c] + b[c] * x[c] + d[c];
  }
}

// x as one call of Forward or Backward reads it: for each of `groups`, `rows` rows of `width`
// values, `stride` floats apart, from column `first` on; `channels` channels, value j of a row
// belonging to channel j mod channels. Either all C channels, narrow ones (C < 64, R a multiple
// of k = ⌈64 / C⌉) read as wide rows of k original rows side by side; or the channels
// [first, first + width) of plain rows (the half a thread takes).
struct View {
  int64_t groups, R, C;          // x: (groups, R, C)
  int64_t first, channels, k;    // channels [first, first + channels), each k times a row
  int64_t rows, width, stride;

  View(int64_t groups, int64_t R, int64_t C) : groups(groups), R(R), C(C), first(0), channels(C) {
    k = (C > 0 && C < kWide && R % ((kWide + C - 1) / C) == 0) ? (kWide + C - 1) / C : 1;
    rows = R / k;
    width = stride = k * C;
  }
  View Columns(int64_t from, int64_t to) const {  // channels [from, to) of a view with k = 1
    View v = *this;
    v.first = from;
    v.channels = v.width = to - from;
    return v;
  }
  const float* Row(const float* x, int64_t g, int64_t r) const {
    return x + g * R * C + r * stride + first;
  }
  float* Row(float* x, int64_t g, int64_t r) const { return x + g * R * C + r * stride + first; }
  int64_t Chunks() const {
    return groups * rows * width >= kLarge ? std::min(kChunks, rows) : 1;
  }
};

// Calls body(chunk, group, first row, row count) over every group's rows, cut into
// v.Chunks() chunks of rows, on two threads where there are several.
template <typename Body>
void EachChunk(ffi::ThreadPool& pool, const View& v, const Body& body) {
  const int64_t chunks = v.Chunks();
  bnlab::ParallelFor(pool, chunks, [&](int64_t i) {
    const int64_t first = v.rows * i / chunks, last = v.rows * (i + 1) / chunks;
    for (int64_t g = 0; g < v.groups; ++g) {
      if (last > first) body(i, g, first, last - first);
    }
  });
}

// K per-channel sums of every group, accumulated by the chunks: float over blocks of kBlock
// rows (one scratch block per chunk), each block added in double.
template <int K>
class Sums {
 public:
  explicit Sums(const View& v)
      : v_(v), totals_(v.Chunks() * v.groups * K * v.width, 0.0),
        blocks_(v.Chunks() * K * v.width) {}

  // sum(block, first row, row count) adds the rows into the zeroed block: K sums of `width`
  // floats one after the other.
  template <typename Sum>
  void Add(int64_t chunk, int64_t group, int64_t first, int64_t count, const Sum& sum) {
    float* block = blocks_.data() + chunk * K * v_.width;
    for (int64_t start = first; start < first + count; start += kBlock) {
      std::fill(block, block + K * v_.width, 0.0f);
      sum(block, start, std::min(kBlock, first + count - start));
      double* total = totals_.data() + (chunk * v_.groups + group) * K * v_.width;
      for (int64_t j = 0; j < K * v_.width; ++j) total[j] += block[j];
    }
  }

  // Sum k of every group's channels (groups, channels), over the chunks and the wide row's
  // copies.
  std::vector<double> Totals(int k) const {
    const int64_t n = v_.channels;
    std::vector<double> sum(v_.groups * n, 0.0);
    for (int64_t chunk = 0; chunk < v_.Chunks(); ++chunk) {
      for (int64_t g = 0; g < v_.groups; ++g) {
        const double* total = totals_.data() + ((chunk * v_.groups + g) * K + k) * v_.width;
        for (int64_t copy = 0; copy < v_.k; ++copy) {
          for (int64_t c = 0; c < n; ++c) sum[g * n + c] += total[copy * n + c];
        }
      }
    }
    return sum;
  }

  // Totals(k) times `scale`, in float.
  std::vector<float> Channels(int k, double scale) const {
    const std::vector<double> sum = Totals(k);
    std::vector<float> out(sum.size());
    for (size_t i = 0; i < sum.size(); ++i) out[i] = static_cast<float>(sum[i] * scale);
    return out;
  }

 private:
  const View& v_;
  std::vector<double> totals_;  // (chunk, group, k, width)
  std::vector<float> blocks_;   // (chunk, k, width)
};

// A view's channels of a per-channel array of x's (groups, C): (groups, channels).
std::vector<float> Gather(const View& v, const float* per_channel) {
  std::vector<float> out(v.groups * v.channels);
  for (int64_t g = 0; g < v.groups; ++g) {
    std::copy_n(per_channel + g * v.C + v.first, v.channels, out.data() + g * v.channels);
  }
  return out;
}

// The inverse: (groups, channels) into x's (groups, C).
void Scatter(const View& v, const std::vector<float>& values, float* per_channel) {
  for (int64_t g = 0; g < v.groups; ++g) {
    std::copy_n(values.data() + g * v.channels, v.channels, per_channel + g * v.C + v.first);
  }
}

// (groups, channels) repeated across the wide row: (groups, width).
std::vector<float> Widen(const View& v, const std::vector<float>& values) {
  std::vector<float> wide(v.groups * v.width);
  for (int64_t g = 0; g < v.groups; ++g) {
    for (int64_t copy = 0; copy < v.k; ++copy) {
      std::copy_n(values.data() + g * v.channels, v.channels,
                  wide.data() + g * v.width + copy * v.channels);
    }
  }
  return wide;
}

// o of the forward pass: each group's mean of its first ≤ kBlock rows, per channel (zero for
// R = 0). Any value near μ serves: it only keeps the sums of x − o small.
std::vector<float> Offset(const View& v, const float* x) {
  const int64_t rows = std::min(v.R, kBlock);
  std::vector<float> o(v.groups * v.channels, 0.0f);
  for (int64_t g = 0; g < v.groups; ++g) {
    float* out = o.data() + g * v.channels;
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x + (g * v.R + r) * v.C + v.first;
      for (int64_t c = 0; c < v.channels; ++c) out[c] += row[c];
    }
    const float count = static_cast<float>(std::max<int64_t>(rows, 1));
    for (int64_t c = 0; c < v.channels; ++c) out[c] /= count;
  }
  return o;
}

void Forward(ffi::ThreadPool& pool, const View& v, const float* x, const float* gamma,
             const float* beta, float epsilon, float* y, float* mean, float* variance) {
  const double n = static_cast<double>(std::max<int64_t>(v.R, 1));
  const std::vector<float> o = Offset(v, x), o_wide = Widen(v, o);
  Sums<2> sums(v);  // Σ (x − o) and Σ (x − o)²
  EachChunk(pool, v, [&](int64_t chunk, int64_t g, int64_t first, int64_t count) {
    sums.Add(chunk, g, first, count, [&](float* block, int64_t r, int64_t rows) {
      SumShifted(block, block + v.width, v.Row(x, g, r), o_wide.data() + g * v.width, rows,
                 v.stride, v.width);
    });
  });
  const std::vector<double> s1 = sums.Totals(0), s2 = sums.Totals(1);
  std::vector<float> mu(s1.size()), var(s1.size());
  for (size_t i = 0; i < s1.size(); ++i) {
    const double m1 = s1[i] / n;
    mu[i] = static_cast<float>(o[i] + m1);
    var[i] = static_cast<float>(std::max(s2[i] / n - m1 * m1, 0.0));
  }
  std::vector<float> a = Gather(v, gamma), b = Gather(v, beta);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = a[i] / std::sqrt(var[i] + epsilon);
    b[i] = b[i] - mu[i] * a[i];
  }
  Scatter(v, mu, mean);
  Scatter(v, var, variance);
  const std::vector<float> a_wide = Widen(v, a), b_wide = Widen(v, b);
  EachChunk(pool, v, [&](int64_t, int64_t g, int64_t first, int64_t count) {
    Affine(v.Row(y, g, first), v.Row(x, g, first), a_wide.data() + g * v.width,
           b_wide.data() + g * v.width, count, v.stride, v.width);
  });
}

void Backward(ffi::ThreadPool& pool, const View& v, const float* x, const float* dy,
              const float* mean, const float* variance, const float* gamma, const float* d_mean,
              const float* d_variance, float epsilon, float* dx, float* d_gamma, float* d_beta) {
  const double n = static_cast<double>(std::max<int64_t>(v.R, 1));
  const std::vector<float> mu = Gather(v, mean), mu_wide = Widen(v, mu);
  Sums<2> sums(v);  // Σ dy and Σ dy (x − μ)
  EachChunk(pool, v, [&](int64_t chunk, int64_t g, int64_t first, int64_t count) {
    sums.Add(chunk, g, first, count, [&](float* block, int64_t r, int64_t rows) {
      SumGradients(block, block + v.width, v.Row(dy, g, r), v.Row(x, g, r),
                   mu_wide.data() + g * v.width, rows, v.stride, v.width);
    });
  });
  const std::vector<float> sum_dy = sums.Channels(0, 1.0), sum_dy_centred = sums.Channels(1, 1.0);
  const std::vector<float> var = Gather(v, variance), scale = Gather(v, gamma);
  const std::vector<float> dm = Gather(v, d_mean), dv = Gather(v, d_variance);
  std::vector<float> dg(mu.size()), A(mu.size()), B(mu.size()), D(mu.size());
  const float share = static_cast<float>(1.0 / n);
  for (size_t i = 0; i < mu.size(); ++i) {
    const float inverse = 1.0f / std::sqrt(var[i] + epsilon);
    dg[i] = sum_dy_centred[i] * inverse;
    // dx = γ i dy + slope (x − μ) + offset, the − slope μ folded into the constant
    const float slope = (2.0f * dv[i] - scale[i] * inverse * inverse * dg[i]) * share;
    const float offset = (dm[i] - scale[i] * inverse * sum_dy[i]) * share;
    A[i] = scale[i] * inverse;
    B[i] = slope;
    D[i] = offset - slope * mu[i];
  }
  Scatter(v, dg, d_gamma);
  Scatter(v, sum_dy, d_beta);
  const std::vector<float> A_wide = Widen(v, A), B_wide = Widen(v, B), D_wide = Widen(v, D);
  EachChunk(pool, v, [&](int64_t, int64_t g, int64_t first, int64_t count) {
    const int64_t c = g * v.width;
    Affine2(v.Row(dx, g, first), v.Row(dy, g, first), v.Row(x, g, first), A_wide.data() + c,
            B_wide.data() + c, D_wide.data() + c, count, v.stride, v.width);
  });
}

// Runs pass(view) over all of x: for plain rows of many values, half the channels on each of
// two threads (one fork for the whole call); else the view's row chunks (EachChunk: a fork per
// pass, which only a large x repays).
template <typename Pass>
void Run(ffi::ThreadPool& pool, int64_t groups, int64_t R, int64_t C, const Pass& pass) {
  const View all(groups, R, C);
  if (all.k == 1 && C >= 2 * kSplitChannels && groups * R * C >= kSplit && all.Chunks() == 1) {
    const int64_t mid = C / 2 / kSplitChannels * kSplitChannels;  // whole cache lines each
    bnlab::ParallelFor(pool, 2, [&](int64_t half) {
      pass(half ? all.Columns(mid, C) : all.Columns(0, mid));
    });
  } else {
    pass(all);
  }
}

// (groups, R, C) of x, or an error when the per-channel arrays do not match it.
ffi::Error Shape(ffi::Buffer<ffi::F32>& x, std::initializer_list<int64_t> channel_counts,
                 int64_t* groups, int64_t* R, int64_t* C) {
  auto dims = x.dimensions();
  if (dims.size() < 2) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "batch_norm: x must be (..., R, C)");
  }
  *C = dims[dims.size() - 1];
  *R = dims[dims.size() - 2];
  const int64_t rows = *R * *C;
  *groups = rows ? static_cast<int64_t>(x.element_count()) / rows : 0;
  for (int64_t count : channel_counts) {
    if (count != *groups * *C) {
      return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                        "batch_norm: the per-channel arrays must be (..., C) as x's groups");
    }
  }
  return ffi::Error::Success();
}

ffi::Error BatchNormForward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                            ffi::Buffer<ffi::F32> gamma, ffi::Buffer<ffi::F32> beta, float epsilon,
                            ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::F32> mean,
                            ffi::ResultBuffer<ffi::F32> variance) {
  int64_t groups, R, C;
  ffi::Error shape = Shape(x, {int64_t(gamma.element_count()), int64_t(beta.element_count())},
                           &groups, &R, &C);
  if (shape.failure()) return shape;
  Run(pool, groups, R, C, [&](const View& v) {
    Forward(pool, v, x.typed_data(), gamma.typed_data(), beta.typed_data(), epsilon,
            y->typed_data(), mean->typed_data(), variance->typed_data());
  });
  return ffi::Error::Success();
}

ffi::Error BatchNormBackward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                             ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> mean,
                             ffi::Buffer<ffi::F32> variance,
                             ffi::Buffer<ffi::F32> gamma, ffi::Buffer<ffi::F32> d_mean,
                             ffi::Buffer<ffi::F32> d_variance, float epsilon,
                             ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> d_gamma,
                             ffi::ResultBuffer<ffi::F32> d_beta) {
  int64_t groups, R, C;
  ffi::Error shape = Shape(x, {int64_t(mean.element_count()), int64_t(variance.element_count()),
                               int64_t(gamma.element_count()), int64_t(d_mean.element_count()),
                               int64_t(d_variance.element_count())},
                           &groups, &R, &C);
  if (shape.failure()) return shape;
  if (dy.element_count() != x.element_count()) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "batch_norm: dy must be x's shape");
  }
  Run(pool, groups, R, C, [&](const View& v) {
    Backward(pool, v, x.typed_data(), dy.typed_data(), mean.typed_data(), variance.typed_data(),
             gamma.typed_data(), d_mean.typed_data(), d_variance.typed_data(), epsilon,
             dx->typed_data(), d_gamma->typed_data(), d_beta->typed_data());
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BnlabBatchNormForward, BatchNormForward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(BnlabBatchNormBackward, BatchNormBackward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
