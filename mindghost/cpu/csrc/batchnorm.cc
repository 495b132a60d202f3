// BatchNorm in training mode (batch statistics), optionally followed by ReLU, for MindSpore's CPU backend
// (`ops.Custom(..., func_type="aot")`).
//
// Why: MindSpore's CPU BatchNorm and BatchNormGrad (oneDNN, plain NCHW) took 26-31% of a GhostNet train step, and
// the ReLU after most BNs costs another pass forward and backward. Here each channel is one task: the statistics
// pass reads the channel from memory, the normalising pass finds it in cache (a channel of a b32 56x56 map is
// 400 KB), and ReLU is applied in the same pass (its gradient mask is recomputed from x, not stored).
//
// Math (Ioffe & Szegedy 2015, as MindSpore's BatchNorm with is_training=True): per channel c over M = N*H*W values,
// mean, biased var, invstd = 1/sqrt(var + eps), y = (x - mean) * gamma * invstd + beta [then max(y, 0)].
// Backward, with dy' = dy masked by y > 0 under ReLU: dbeta = sum dy', dgamma = invstd * sum dy' (x - mean),
// dx = gamma * invstd * (dy' - dbeta / M - (x - mean) * invstd * dgamma / M).
// Sums are float 8-lane partial sums per plane, added in double; the statistics are shifted by the channel's first
// value (no cancellation when |mean| >> std).
// Exported (MindSpore's AOT signature; params = inputs then outputs):
//   BnTrainForward{,Relu}(x, gamma, beta, moving_mean, moving_var, attrs) -> y, mean, var, new_moving_mean,
//       new_moving_var   (var biased; new_moving = (1 - f) * moving + f * batch, the batch variance unbiased)
//   BnTrainBackward{,Relu}(dy, x, gamma, beta, mean, var, attrs) -> dx, dgamma, dbeta
// Shapes: x, y, dy, dx (N, C, H, W); attrs (2,) = (eps, f); every other (C,). float32.
// The moving statistics come out as outputs (the caller assigns them) so that one op replaces the ~9 small ops
// of an update written in MindSpore, whose launch cost showed at 32 px.
#include <cmath>
#include <cstdint>

#include "common.h"

namespace {

typedef int32_t I8 __attribute__((vector_size(32)));

struct Shape {
  int64_t n, c, hw;
  int64_t count() const { return n * hw; }
};

inline V8 Splat(float v) { return V8{v, v, v, v, v, v, v, v}; }

// y (or dy') under the optional ReLU mask: keep where `y` > 0.
inline V8 KeepPositive(V8 value, V8 y) { return (V8)((I8)value & (I8)(y > Splat(0.0f))); }

template <bool kRelu>
void Forward(const Shape &s, const float *__restrict x, const float *gamma, const float *beta,
             const float *moving_mean, const float *moving_var, const float *attrs, float *__restrict y,
             float *mean_out, float *var_out, float *new_moving_mean, float *new_moving_var) {
  const float eps = attrs[0], factor = attrs[1];
  ParallelFor(s.c, s.count() * kPassWork, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const float shift = x[c * s.hw];
      double sum = 0.0, sum_sq = 0.0;
      for (int64_t n = 0; n < s.n; ++n) {
        const float *p = x + (n * s.c + c) * s.hw;
        V8 a = Splat(0.0f), b = Splat(0.0f);
        int64_t k = 0;
        for (; k + 8 <= s.hw; k += 8) {
          const V8 v = Load8(p + k) - Splat(shift);
          a += v;
          b += v * v;
        }
        float ta = 0.0f, tb = 0.0f;
        for (; k < s.hw; ++k) {
          const float v = p[k] - shift;
          ta += v;
          tb += v * v;
        }
        sum += static_cast<double>(Sum8(a)) + ta;
        sum_sq += static_cast<double>(Sum8(b)) + tb;
      }
      const double m = static_cast<double>(s.count());
      const double shifted_mean = sum / m;
      const double var = std::max(sum_sq / m - shifted_mean * shifted_mean, 0.0);
      const float mean = static_cast<float>(shifted_mean + shift);
      const float scale = gamma[c] * static_cast<float>(1.0 / std::sqrt(var + eps));
      const float bias = beta[c];
      mean_out[c] = mean;
      var_out[c] = static_cast<float>(var);
      const double unbiased = s.count() > 1 ? var * m / (m - 1.0) : var;
      new_moving_mean[c] = moving_mean[c] * (1.0f - factor) + mean * factor;
      new_moving_var[c] = moving_var[c] * (1.0f - factor) + static_cast<float>(unbiased) * factor;
      for (int64_t n = 0; n < s.n; ++n) {
        const float *p = x + (n * s.c + c) * s.hw;
        float *q = y + (n * s.c + c) * s.hw;
        int64_t k = 0;
        for (; k + 8 <= s.hw; k += 8) {
          V8 v = (Load8(p + k) - Splat(mean)) * Splat(scale) + Splat(bias);
          if (kRelu) v = KeepPositive(v, v);
          Store8(q + k, v);
        }
        for (; k < s.hw; ++k) {
          const float v = (p[k] - mean) * scale + bias;
          q[k] = kRelu ? (v > 0.0f ? v : 0.0f) : v;
        }
      }
    }
  });
}

template <bool kRelu>
void Backward(const Shape &s, const float *__restrict dy, const float *__restrict x, const float *gamma,
              const float *beta, const float *mean_in, const float *var_in, const float *attrs,
              float *__restrict dx, float *dgamma, float *dbeta) {
  const float eps = attrs[0];
  ParallelFor(s.c, s.count() * kPassWork, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const float mean = mean_in[c];
      const float invstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var_in[c]) + eps));
      const float scale = gamma[c] * invstd;
      const float bias = beta[c];
      double sum_dy = 0.0, sum_dy_xc = 0.0;
      for (int64_t n = 0; n < s.n; ++n) {
        const int64_t off = (n * s.c + c) * s.hw;
        const float *p = x + off, *d = dy + off;
        V8 a = Splat(0.0f), b = Splat(0.0f);
        int64_t k = 0;
        for (; k + 8 <= s.hw; k += 8) {
          const V8 xc = Load8(p + k) - Splat(mean);
          V8 g = Load8(d + k);
          if (kRelu) g = KeepPositive(g, xc * Splat(scale) + Splat(bias));
          a += g;
          b += g * xc;
        }
        float ta = 0.0f, tb = 0.0f;
        for (; k < s.hw; ++k) {
          const float xc = p[k] - mean;
          const float g = (!kRelu || xc * scale + bias > 0.0f) ? d[k] : 0.0f;
          ta += g;
          tb += g * xc;
        }
        sum_dy += static_cast<double>(Sum8(a)) + ta;
        sum_dy_xc += static_cast<double>(Sum8(b)) + tb;
      }
      const double m = static_cast<double>(s.count());
      dbeta[c] = static_cast<float>(sum_dy);
      dgamma[c] = static_cast<float>(sum_dy_xc * invstd);
      const float mean_dy = static_cast<float>(sum_dy / m);
      const float k_xc = static_cast<float>(sum_dy_xc / m * invstd * invstd);
      for (int64_t n = 0; n < s.n; ++n) {
        const int64_t off = (n * s.c + c) * s.hw;
        const float *p = x + off, *d = dy + off;
        float *q = dx + off;
        int64_t k = 0;
        for (; k + 8 <= s.hw; k += 8) {
          const V8 xc = Load8(p + k) - Splat(mean);
          V8 g = Load8(d + k);
          if (kRelu) g = KeepPositive(g, xc * Splat(scale) + Splat(bias));
          Store8(q + k, Splat(scale) * (g - Splat(mean_dy) - xc * Splat(k_xc)));
        }
        for (; k < s.hw; ++k) {
          const float xc = p[k] - mean;
          const float g = (!kRelu || xc * scale + bias > 0.0f) ? d[k] : 0.0f;
          q[k] = scale * (g - mean_dy - xc * k_xc);
        }
      }
    }
  });
}

// `maps`: bit i set when param i is (N, C, H, W) like param 0; the others are (C,) except `attrs_index`, (2,).
bool ValidBn(int nparam, int expected, const int *ndims, int64_t **shapes, const char **dtypes, unsigned maps,
             int attrs_index) {
  if (nparam != expected || !AllFloat32(nparam, dtypes)) return false;
  for (int i = 0; i < nparam; ++i) {
    if ((maps >> i) & 1u) {
      if (ndims[i] != 4) return false;
      for (int d = 0; d < 4; ++d) {
        if (shapes[i][d] != shapes[0][d]) return false;
      }
    } else if (ndims[i] != 1 || shapes[i][0] != (i == attrs_index ? 2 : shapes[0][1])) {
      return false;
    }
  }
  return true;
}

Shape MakeShape(const int64_t *x) { return {x[0], x[1], x[2] * x[3]}; }

}  // namespace

#define MG_BN(NAME, RELU)                                                                                          \
  extern "C" int BnTrainForward##NAME(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, \
                                      void *, void *) {                                                            \
    if (!ValidBn(nparam, 11, ndims, shapes, dtypes, 0x41u, 5)) return 1;                                           \
    float **p = reinterpret_cast<float **>(params);                                                                \
    Forward<RELU>(MakeShape(shapes[0]), p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]);        \
    return 0;                                                                                                      \
  }                                                                                                                \
  extern "C" int BnTrainBackward##NAME(int nparam, void **params, int *ndims, int64_t **shapes,                    \
                                       const char **dtypes, void *, void *) {                                      \
    if (!ValidBn(nparam, 10, ndims, shapes, dtypes, 0x83u, 6)) return 1;                                           \
    float **p = reinterpret_cast<float **>(params);                                                                \
    Backward<RELU>(MakeShape(shapes[0]), p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]);              \
    return 0;                                                                                                      \
  }

MG_BN(, false)
MG_BN(Relu, true)
