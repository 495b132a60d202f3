// Depthwise convolution for MindSpore's CPU backend (loaded as `ops.Custom(..., func_type="aot")`).
//
// Why: MindSpore's CPU Conv2D hands grouped convolutions to oneDNN with plain NCHW weights, which leaves oneDNN
// only its im2col + per-group GEMM path (~2.5 GMAC/s here); GhostNet's depthwise convs take half of a training
// step that way. These direct loops run at 22-25 GMAC/s, and the forward sums in the same order as oneDNN.
//
// Layout: x (N, C, H, W), w (C*M, 1, KH, KW), y (N, C*M, OH, OW), float32, zero padding (KH/2, KW/2) on each
// side, stride S in {1, 2}, channel multiplier M (output channel o reads input channel o / M).
// Exported (MindSpore's AOT signature; params = inputs then the output):
//   DwForwardS{1,2}(x, w) -> y
//   DwForwardBiasS{1,2}(x, w, b) -> y            (b: (C*M,), added as BiasAdd would)
//   DwForwardBiasReluS{1,2}(x, w, b) -> y        (the same, then max(y, 0): a folded conv + ReLU, inference only)
//   DwBackwardInputS{1,2}(dy, w, x) -> dx        (x only gives the shape)
//   DwBackwardFilterS{1,2}(dy, x, w) -> dw       (w only gives the shape)
// Threads: MINDGHOST_KERNEL_THREADS (set by mindghost.runtime to the process's CPU share), else all cores.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace {

constexpr int64_t kSmallMap = 16;  // output maps up to 4x4 take the channels-last path (ForwardSmall)

struct Geo {
  int64_t n, c, m, h, w, kh, kw, ph, pw, oh, ow;
  int64_t oc() const { return c * m; }
};

Geo MakeGeo(const int64_t *x, const int64_t *wt, const int64_t *y) {
  Geo g;
  g.n = x[0];
  g.c = x[1];
  g.m = wt[0] / x[1];
  g.h = x[2];
  g.w = x[3];
  g.kh = wt[2];
  g.kw = wt[3];
  g.ph = wt[2] / 2;
  g.pw = wt[3] / 2;
  g.oh = y[2];
  g.ow = y[3];
  return g;
}

// Output columns [lo, hi) whose input column ow*S - pw + j lies inside [0, W).
template <int S>
inline void ColRange(const Geo &g, int64_t j, int64_t *lo, int64_t *hi) {
  const int64_t a = g.pw - j;
  *lo = a <= 0 ? 0 : (a + S - 1) / S;
  const int64_t b = g.w - 1 + g.pw - j;
  *hi = b < 0 ? 0 : std::min(g.ow, b / S + 1);
}

// Adds bias[o] to each output plane: (sum of taps) + bias, as Conv2D followed by BiasAdd computes it.
void AddBias(const Geo &g, const float *bias, float *y) {
  if (bias == nullptr) return;
  const int64_t size = g.oh * g.ow;
  for (int64_t plane = 0; plane < g.n * g.oc(); ++plane) {
    const float b = bias[plane % g.oc()];
    float *__restrict yp = y + plane * size;
    for (int64_t i = 0; i < size; ++i) yp[i] += b;
  }
}

template <int S>
void ForwardGeneric(const Geo &g, const float *__restrict x, const float *__restrict w, float *__restrict y) {
  ParallelFor(g.n * g.oc(), g.oh * g.ow * g.kh * g.kw, [&](int64_t first, int64_t last) {
    for (int64_t plane = first; plane < last; ++plane) {
      const int64_t o = plane % g.oc();
      const float *xp = x + ((plane / g.oc()) * g.c + o / g.m) * g.h * g.w;
      const float *wp = w + o * g.kh * g.kw;
      float *yp = y + plane * g.oh * g.ow;
      std::memset(yp, 0, sizeof(float) * g.oh * g.ow);
      for (int64_t r = 0; r < g.oh; ++r) {
        float *__restrict yr = yp + r * g.ow;
        for (int64_t i = 0; i < g.kh; ++i) {
          const int64_t ih = r * S - g.ph + i;
          if (ih < 0 || ih >= g.h) continue;
          for (int64_t j = 0; j < g.kw; ++j) {
            const float wv = wp[i * g.kw + j];
            const float *__restrict xs = xp + ih * g.w - g.pw + j;
            int64_t lo, hi;
            ColRange<S>(g, j, &lo, &hi);
            for (int64_t col = lo; col < hi; ++col) yr[col] += wv * xs[col * S];
          }
        }
      }
    }
  });
}

template <int S>
void BackwardInputGeneric(const Geo &g, const float *__restrict dy, const float *__restrict w, float *__restrict dx) {
  ParallelFor(g.n * g.c, g.m * g.oh * g.ow * g.kh * g.kw, [&](int64_t first, int64_t last) {
    for (int64_t plane = first; plane < last; ++plane) {
      float *dxp = dx + plane * g.h * g.w;
      std::memset(dxp, 0, sizeof(float) * g.h * g.w);
      const int64_t n = plane / g.c, c = plane % g.c;
      for (int64_t k = 0; k < g.m; ++k) {
        const int64_t o = c * g.m + k;
        const float *dyp = dy + (n * g.oc() + o) * g.oh * g.ow;
        const float *wp = w + o * g.kh * g.kw;
        for (int64_t r = 0; r < g.oh; ++r) {
          const float *__restrict dyr = dyp + r * g.ow;
          for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t ih = r * S - g.ph + i;
            if (ih < 0 || ih >= g.h) continue;
            for (int64_t j = 0; j < g.kw; ++j) {
              const float wv = wp[i * g.kw + j];
              float *__restrict dxs = dxp + ih * g.w - g.pw + j;
              int64_t lo, hi;
              ColRange<S>(g, j, &lo, &hi);
              for (int64_t col = lo; col < hi; ++col) dxs[col * S] += wv * dyr[col];
            }
          }
        }
      }
    }
  });
}

// Copies plane `src` (h x w) into `dst` ((h + 2*ph) x (w + 2*pw), zero border).
inline void PadPlane(const float *src, int64_t h, int64_t w, int64_t ph, int64_t pw, float *dst) {
  const int64_t stride = w + 2 * pw;
  std::memset(dst, 0, sizeof(float) * (h + 2 * ph) * stride);
  for (int64_t r = 0; r < h; ++r) std::memcpy(dst + (r + ph) * stride + pw, src + r * w, sizeof(float) * w);
}

// One output value: the KH x KW taps at `x` (row stride `xs`), summed in row-major order from 0 (the order
// oneDNN's GEMM path uses, so outputs match it bit for bit).
template <int KH, int KW>
inline float Taps(const float *wk, const float *x, int64_t xs) {
  float acc = 0.0f;
  for (int i = 0; i < KH; ++i) {
    for (int j = 0; j < KW; ++j) acc += wk[i * KW + j] * x[i * xs + j];
  }
  return acc;
}

// y (oh x ow) = correlation of the padded plane `xp` (row stride `xs`) with a KH x KW kernel at stride S; with
// `add`, added to y. KH, KW, S are constants so that the tap loops unroll and the column loop vectorizes.
template <int S, int KH, int KW>
void CorrelatePlane(const float *__restrict xp, int64_t xs, const float *__restrict w, int64_t oh, int64_t ow,
                    bool add, float *__restrict y) {
  float wk[KH * KW];
  for (int t = 0; t < KH * KW; ++t) wk[t] = w[t];
  for (int64_t r = 0; r < oh; ++r) {
    const float *__restrict row = xp + r * S * xs;
    float *__restrict yr = y + r * ow;
    if (add) {  // two loops: a branch inside would stop the column loop from vectorizing
      for (int64_t col = 0; col < ow; ++col) yr[col] += Taps<KH, KW>(wk, row + col * S, xs);
    } else {
      for (int64_t col = 0; col < ow; ++col) yr[col] = Taps<KH, KW>(wk, row + col * S, xs);
    }
  }
}

using PlaneFn = void (*)(const float *, int64_t, const float *, int64_t, int64_t, bool, float *);

// Kernel sizes with unrolled taps (GhostNet's); others run the generic loops.
#define MG_FIXED_SIZES(F) F(3, 3) F(5, 5) F(7, 7) F(1, 5) F(5, 1) F(1, 3) F(3, 1)

// The unrolled plane kernel for (kh, kw), or nullptr.
template <int S>
PlaneFn FixedKernel(int64_t kh, int64_t kw) {
#define MG_CASE(KH, KW) \
  if (kh == KH && kw == KW) return CorrelatePlane<S, KH, KW>;
  MG_FIXED_SIZES(MG_CASE)
#undef MG_CASE
  return nullptr;
}

// Small maps (GhostNet's late stages, and everything at CIFAR-like sizes): per-plane loops would run a few
// columns at a time, so each image is transposed to channels-last with a zero border and the channel loop is
// vectorized instead. Taps are summed in the same order as CorrelatePlane (same results). Channel multiplier 1.
template <int S>
void ForwardSmall(const Geo &g, const float *__restrict x, const float *__restrict w, const float *bias,
                  float *__restrict y) {
  const int64_t c = g.c, taps = g.kh * g.kw, hp = g.h + 2 * g.ph, wp = g.w + 2 * g.pw;
  std::vector<float> wt(taps * c);  // wt[tap][channel]
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t t = 0; t < taps; ++t) wt[t * c + ch] = w[ch * taps + t];
  }
  // work per image: the taps, and the transposed copy (one load and one store per padded element)
  ParallelFor(g.n, c * (g.oh * g.ow * taps + hp * wp), [&](int64_t first, int64_t last) {
    std::vector<float> xt(hp * wp * c, 0.0f), acc(c);  // the zero border is written once, never overwritten
    const int64_t plane = g.h * g.w;
    for (int64_t n = first; n < last; ++n) {
      const float *xn = x + n * c * plane;
      for (int64_t r = 0; r < g.h; ++r) {  // contiguous stores, loads `plane` apart (the image is in L1/L2)
        for (int64_t col = 0; col < g.w; ++col) {
          float *__restrict dst = xt.data() + ((r + g.ph) * wp + col + g.pw) * c;
          const float *__restrict src = xn + r * g.w + col;
          for (int64_t ch = 0; ch < c; ++ch) dst[ch] = src[ch * plane];
        }
      }
      float *yn = y + n * c * g.oh * g.ow;
      for (int64_t r = 0; r < g.oh; ++r) {
        for (int64_t col = 0; col < g.ow; ++col) {
          float *__restrict a = acc.data();
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (int64_t i = 0; i < g.kh; ++i) {
            for (int64_t j = 0; j < g.kw; ++j) {
              const float *__restrict xs = xt.data() + ((r * S + i) * wp + col * S + j) * c;
              const float *__restrict ws = wt.data() + (i * g.kw + j) * c;
              for (int64_t ch = 0; ch < c; ++ch) a[ch] += ws[ch] * xs[ch];
            }
          }
          float *yp = yn + r * g.ow + col;
          if (bias != nullptr) {
            for (int64_t ch = 0; ch < c; ++ch) yp[ch * g.oh * g.ow] = a[ch] + bias[ch];
          } else {
            for (int64_t ch = 0; ch < c; ++ch) yp[ch * g.oh * g.ow] = a[ch];
          }
        }
      }
    }
  });
}

template <int S>
void Forward(const Geo &g, const float *__restrict x, const float *__restrict w, const float *bias,
             float *__restrict y) {
  if (g.m == 1 && g.oh * g.ow <= kSmallMap) return ForwardSmall<S>(g, x, w, bias, y);
  const PlaneFn fixed = FixedKernel<S>(g.kh, g.kw);
  if (fixed == nullptr) {
    ForwardGeneric<S>(g, x, w, y);
    return AddBias(g, bias, y);
  }
  const int64_t xs = g.w + 2 * g.pw;
  ParallelFor(g.n * g.oc(), g.oh * g.ow * g.kh * g.kw, [&](int64_t first, int64_t last) {
    std::vector<float> pad((g.h + 2 * g.ph) * xs);
    int64_t padded = -1;  // input plane currently in `pad` (channel multiplier > 1 reuses it)
    for (int64_t plane = first; plane < last; ++plane) {
      const int64_t o = plane % g.oc();
      const int64_t src = (plane / g.oc()) * g.c + o / g.m;
      if (src != padded) PadPlane(x + src * g.h * g.w, g.h, g.w, g.ph, g.pw, pad.data());
      padded = src;
      fixed(pad.data(), xs, w + o * g.kh * g.kw, g.oh, g.ow, false, y + plane * g.oh * g.ow);
    }
  });
  AddBias(g, bias, y);
}

// dx is the correlation of dy, spread out by the stride (zeros in between) and zero-padded to (h + kh - 1) x
// (w + kw - 1) with kh/2, kw/2 in front, with the kernel flipped in both axes.
template <int S>
void BackwardInputFixed(const Geo &g, PlaneFn fixed, const float *__restrict dy, const float *__restrict w,
                        float *__restrict dx) {
  const int64_t ph = g.h + g.kh - 1, ys = g.w + g.kw - 1;
  ParallelFor(g.n * g.c, g.m * g.h * g.w * g.kh * g.kw, [&](int64_t first, int64_t last) {
    std::vector<float> pad(ph * ys), flipped(g.kh * g.kw);
    for (int64_t plane = first; plane < last; ++plane) {
      const int64_t n = plane / g.c, c = plane % g.c;
      for (int64_t k = 0; k < g.m; ++k) {
        const int64_t o = c * g.m + k;
        const float *wo = w + o * g.kh * g.kw;
        for (int64_t t = 0; t < g.kh * g.kw; ++t) flipped[t] = wo[g.kh * g.kw - 1 - t];
        const float *src = dy + (n * g.oc() + o) * g.oh * g.ow;
        std::memset(pad.data(), 0, sizeof(float) * ph * ys);
        for (int64_t r = 0; r < g.oh; ++r) {
          float *dst = pad.data() + (r * S + g.ph) * ys + g.pw;
          for (int64_t col = 0; col < g.ow; ++col) dst[col * S] = src[r * g.ow + col];
        }
        fixed(pad.data(), ys, flipped.data(), g.h, g.w, k > 0, dx + plane * g.h * g.w);
      }
    }
  });
}

// dw[o] partial sums over one plane: dy times the padded x shifted by each tap, in 8-wide vectors (GCC/Clang
// vector extension, common.h; plain loops here did not vectorize). `lanes` holds KH*KW x 8 running sums.
template <int S, int KH, int KW>
void FilterGradPlane(const float *__restrict xp, int64_t xs, const float *__restrict dy, int64_t oh, int64_t ow,
                     float *__restrict lanes) {
  V8 acc[KH * KW];
  for (int t = 0; t < KH * KW; ++t) acc[t] = Load8(lanes + t * 8);
  for (int64_t r = 0; r < oh; ++r) {
    const float *row = xp + r * S * xs;
    const float *d = dy + r * ow;
    int64_t col = 0;
    for (; col + 8 <= ow; col += 8) {
      const V8 dv = Load8(d + col);
      for (int t = 0; t < KH * KW; ++t) {
        const float *x = row + (t / KW) * xs + t % KW + col * S;
        if (S == 1) {
          acc[t] += dv * Load8(x);
        } else {
          V8 xv;
          for (int l = 0; l < 8; ++l) xv[l] = x[l * S];
          acc[t] += dv * xv;
        }
      }
    }
    for (; col < ow; ++col) {
      for (int t = 0; t < KH * KW; ++t) acc[t][0] += d[col] * row[(t / KW) * xs + t % KW + col * S];
    }
  }
  for (int t = 0; t < KH * KW; ++t) std::memcpy(lanes + t * 8, &acc[t], sizeof(V8));
}

using FilterFn = void (*)(const float *, int64_t, const float *, int64_t, int64_t, float *);

template <int S>
FilterFn FixedFilterKernel(int64_t kh, int64_t kw) {
#define MG_CASE(KH, KW) \
  if (kh == KH && kw == KW) return FilterGradPlane<S, KH, KW>;
  MG_FIXED_SIZES(MG_CASE)
#undef MG_CASE
  return nullptr;
}

template <int S>
void BackwardFilterFixed(const Geo &g, FilterFn fixed, const float *__restrict dy, const float *__restrict x,
                         float *__restrict dw) {
  const int64_t taps = g.kh * g.kw, xs = g.w + 2 * g.pw;
  ParallelFor(g.oc(), g.n * g.oh * g.ow * taps, [&](int64_t first, int64_t last) {
    std::vector<float> pad((g.h + 2 * g.ph) * xs), lanes(taps * 8);
    for (int64_t o = first; o < last; ++o) {
      std::fill(lanes.begin(), lanes.end(), 0.0f);
      for (int64_t n = 0; n < g.n; ++n) {
        PadPlane(x + (n * g.c + o / g.m) * g.h * g.w, g.h, g.w, g.ph, g.pw, pad.data());
        fixed(pad.data(), xs, dy + (n * g.oc() + o) * g.oh * g.ow, g.oh, g.ow, lanes.data());
      }
      for (int64_t t = 0; t < taps; ++t) {
        float sum = 0.0f;
        for (int l = 0; l < 8; ++l) sum += lanes[t * 8 + l];
        dw[o * taps + t] = sum;
      }
    }
  });
}

template <int S>
void BackwardInput(const Geo &g, const float *__restrict dy, const float *__restrict w, float *__restrict dx) {
  const PlaneFn fixed = FixedKernel<1>(g.kh, g.kw);
  if (fixed != nullptr) return BackwardInputFixed<S>(g, fixed, dy, w, dx);
  BackwardInputGeneric<S>(g, dy, w, dx);
}

template <int S>
void BackwardFilterGeneric(const Geo &g, const float *__restrict dy, const float *__restrict x, float *__restrict dw) {
  ParallelFor(g.oc(), g.n * g.oh * g.ow * g.kh * g.kw, [&](int64_t first, int64_t last) {
    std::vector<float> acc(g.ow);  // per-column partial sums: the inner loop then vectorizes
    for (int64_t o = first; o < last; ++o) {
      for (int64_t i = 0; i < g.kh; ++i) {
        for (int64_t j = 0; j < g.kw; ++j) {
          int64_t lo, hi;
          ColRange<S>(g, j, &lo, &hi);
          std::fill(acc.begin(), acc.end(), 0.0f);
          float *__restrict a = acc.data();
          for (int64_t n = 0; n < g.n; ++n) {
            const float *xp = x + (n * g.c + o / g.m) * g.h * g.w;
            const float *dyp = dy + (n * g.oc() + o) * g.oh * g.ow;
            for (int64_t r = 0; r < g.oh; ++r) {
              const int64_t ih = r * S - g.ph + i;
              if (ih < 0 || ih >= g.h) continue;
              const float *__restrict xs = xp + ih * g.w - g.pw + j;
              const float *__restrict dyr = dyp + r * g.ow;
              for (int64_t col = lo; col < hi; ++col) a[col] += dyr[col] * xs[col * S];
            }
          }
          float sum = 0.0f;
          for (int64_t col = lo; col < hi; ++col) sum += a[col];
          dw[(o * g.kh + i) * g.kw + j] = sum;
        }
      }
    }
  });
}

template <int S>
void BackwardFilter(const Geo &g, const float *__restrict dy, const float *__restrict x, float *__restrict dw) {
  const FilterFn fixed = FixedFilterKernel<S>(g.kh, g.kw);
  if (fixed != nullptr) return BackwardFilterFixed<S>(g, fixed, dy, x, dw);
  BackwardFilterGeneric<S>(g, dy, x, dw);
}

}  // namespace

#define MG_STRIDES(MACRO) MACRO(1) MACRO(2)

#define MG_FORWARD(S)                                                                                        \
  extern "C" int DwForwardS##S(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, \
                               void *, void *) {                                                             \
    if (!Valid(nparam, 3, ndims, dtypes)) return 1;                                                          \
    Forward<S>(MakeGeo(shapes[0], shapes[1], shapes[2]), static_cast<float *>(params[0]),                    \
               static_cast<float *>(params[1]), nullptr, static_cast<float *>(params[2]));                   \
    return 0;                                                                                                \
  }                                                                                                          \
  extern "C" int DwForwardBiasS##S(int nparam, void **params, int *ndims, int64_t **shapes,                 \
                                   const char **dtypes, void *, void *) {                                    \
    if (nparam != 4 || !AllFloat32(4, dtypes) || ndims[0] != 4 || ndims[1] != 4 || ndims[2] != 1 ||          \
        ndims[3] != 4 || shapes[2][0] != shapes[1][0])                                                       \
      return 1;                                                                                              \
    Forward<S>(MakeGeo(shapes[0], shapes[1], shapes[3]), static_cast<float *>(params[0]),                    \
               static_cast<float *>(params[1]), static_cast<float *>(params[2]),                             \
               static_cast<float *>(params[3]));                                                             \
    return 0;                                                                                                \
  }
#define MG_FORWARD_RELU(S)                                                                                   \
  extern "C" int DwForwardBiasReluS##S(int nparam, void **params, int *ndims, int64_t **shapes,             \
                                       const char **dtypes, void *extra, void *stream) {                     \
    const int status = DwForwardBiasS##S(nparam, params, ndims, shapes, dtypes, extra, stream);               \
    if (status != 0) return status;                                                                          \
    float *y = static_cast<float *>(params[3]);                                                              \
    const int64_t size = shapes[3][0] * shapes[3][1] * shapes[3][2] * shapes[3][3];                           \
    for (int64_t i = 0; i < size; ++i) y[i] = y[i] > 0.0f ? y[i] : 0.0f;                                     \
    return 0;                                                                                                \
  }
#define MG_BACKWARD_INPUT(S)                                                                                 \
  extern "C" int DwBackwardInputS##S(int nparam, void **params, int *ndims, int64_t **shapes,               \
                                     const char **dtypes, void *, void *) {                                  \
    if (!Valid(nparam, 4, ndims, dtypes)) return 1;                                                          \
    BackwardInput<S>(MakeGeo(shapes[2], shapes[1], shapes[0]), static_cast<float *>(params[0]),              \
                     static_cast<float *>(params[1]), static_cast<float *>(params[3]));                      \
    return 0;                                                                                                \
  }
#define MG_BACKWARD_FILTER(S)                                                                                \
  extern "C" int DwBackwardFilterS##S(int nparam, void **params, int *ndims, int64_t **shapes,              \
                                      const char **dtypes, void *, void *) {                                 \
    if (!Valid(nparam, 4, ndims, dtypes)) return 1;                                                          \
    BackwardFilter<S>(MakeGeo(shapes[1], shapes[2], shapes[0]), static_cast<float *>(params[0]),             \
                      static_cast<float *>(params[1]), static_cast<float *>(params[3]));                     \
    return 0;                                                                                                \
  }

MG_STRIDES(MG_FORWARD)
MG_STRIDES(MG_FORWARD_RELU)
MG_STRIDES(MG_BACKWARD_INPUT)
MG_STRIDES(MG_BACKWARD_FILTER)
