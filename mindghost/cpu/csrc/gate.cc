// x times a gate upsampled to x's size (nearest), for MindSpore's CPU backend (`ops.Custom(..., func_type="aot")`).
//
// Why: GhostNet's SE blocks (gate (N, C, 1, 1)) and GhostNetV2/V3's DFC attention (gate (N, C, H/2, W/2), nearest
// upsampled) both end in `x * up(gate)`. On MindSpore's CPU backend the upsample (ResizeNearestNeighbor) and its
// gradient take ~36% of a GhostNetV2 train step, and the gradient of the broadcast product is a slow ReduceSum.
// One pass over x does the product; one pass over (dy, x) does the gate's gradient.
//
// Layout: x, y, dy (N, C, H, W); g, dg (N, C, GH, GW), float32. Output pixel (i, j) reads gate pixel
// (min(floor(i * GH / H), GH - 1), min(floor(j * GW / W), GW - 1)) with the scale in float, as MindSpore's
// ResizeNearestNeighbor (align_corners=False) and PyTorch's F.interpolate(mode='nearest') do.
// Exported (MindSpore's AOT signature; params = inputs then the output):
//   GateMulForward(x, g) -> y                     (also dx = GateMulForward(dy, g))
//   GateMulBackwardGate(dy, x, g) -> dg           (g only gives the shape; sums in double)
// Threads: as depthwise.cc (MINDGHOST_KERNEL_THREADS), split over the N*C planes.
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"

namespace {

std::vector<int64_t> NearestIndex(int64_t out_size, int64_t in_size) {
  std::vector<int64_t> index(out_size);
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  for (int64_t i = 0; i < out_size; ++i) {
    index[i] = std::min(static_cast<int64_t>(std::floor(static_cast<float>(i) * scale)), in_size - 1);
  }
  return index;
}

struct Planes {
  int64_t planes, h, w, gh, gw;
};

Planes MakePlanes(const int64_t *x, const int64_t *g) { return {x[0] * x[1], x[2], x[3], g[2], g[3]}; }

bool SameBatchAndChannels(const int64_t *a, const int64_t *b) { return a[0] == b[0] && a[1] == b[1]; }

void Forward(const Planes &p, const float *__restrict x, const float *__restrict g, float *__restrict y) {
  const int64_t hw = p.h * p.w;
  const std::vector<int64_t> rows = NearestIndex(p.h, p.gh), cols = NearestIndex(p.w, p.gw);
  ParallelFor(p.planes, hw * kPassWork, [&](int64_t lo, int64_t hi) {
    for (int64_t q = lo; q < hi; ++q) {
      const float *xp = x + q * hw;
      const float *gp = g + q * p.gh * p.gw;
      float *yp = y + q * hw;
      if (p.gh == 1 && p.gw == 1) {
        const float s = gp[0];
        for (int64_t k = 0; k < hw; ++k) yp[k] = xp[k] * s;
        continue;
      }
      for (int64_t i = 0; i < p.h; ++i) {
        const float *grow = gp + rows[i] * p.gw;
        const float *xr = xp + i * p.w;
        float *yr = yp + i * p.w;
        for (int64_t j = 0; j < p.w; ++j) yr[j] = xr[j] * grow[cols[j]];
      }
    }
  });
}

void BackwardGate(const Planes &p, const float *__restrict dy, const float *__restrict x, float *__restrict dg) {
  const int64_t hw = p.h * p.w, ghw = p.gh * p.gw;
  const std::vector<int64_t> rows = NearestIndex(p.h, p.gh), cols = NearestIndex(p.w, p.gw);
  ParallelFor(p.planes, hw * kPassWork, [&](int64_t lo, int64_t hi) {
    std::vector<double> acc(ghw);
    for (int64_t q = lo; q < hi; ++q) {
      const float *dyp = dy + q * hw;
      const float *xp = x + q * hw;
      if (ghw == 1) {
        double s = 0.0;
        for (int64_t k = 0; k < hw; ++k) s += static_cast<double>(dyp[k]) * static_cast<double>(xp[k]);
        dg[q] = static_cast<float>(s);
        continue;
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t i = 0; i < p.h; ++i) {
        double *arow = acc.data() + rows[i] * p.gw;
        const float *dyr = dyp + i * p.w;
        const float *xr = xp + i * p.w;
        for (int64_t j = 0; j < p.w; ++j) arow[cols[j]] += static_cast<double>(dyr[j]) * static_cast<double>(xr[j]);
      }
      float *dgp = dg + q * ghw;
      for (int64_t k = 0; k < ghw; ++k) dgp[k] = static_cast<float>(acc[k]);
    }
  });
}

}  // namespace

extern "C" int GateMulForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                              void *) {
  if (!Valid(nparam, 3, ndims, dtypes) || !SameBatchAndChannels(shapes[0], shapes[1])) return 1;
  Forward(MakePlanes(shapes[0], shapes[1]), static_cast<float *>(params[0]), static_cast<float *>(params[1]),
          static_cast<float *>(params[2]));
  return 0;
}

extern "C" int GateMulBackwardGate(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                   void *, void *) {
  if (!Valid(nparam, 4, ndims, dtypes) || !SameBatchAndChannels(shapes[0], shapes[2])) return 1;
  BackwardGate(MakePlanes(shapes[0], shapes[2]), static_cast<float *>(params[0]), static_cast<float *>(params[1]),
               static_cast<float *>(params[3]));
  return 0;
}
