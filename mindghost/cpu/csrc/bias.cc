// BiasAdd followed by ReLU in one pass, for MindSpore's CPU backend (`ops.Custom(..., func_type="aot")`): the
// inference form of a BN-folded 1x1 conv (MindSpore's CPU Conv2D takes no bias, so a folded conv is Conv2D,
// BiasAdd, ReLU: three passes over the output where this makes two).
// Layout: x, y (N, C, H, W); b (C,); float32. y = max(x + b[c], 0).
// Exported (MindSpore's AOT signature): BiasReluForward(x, b) -> y
#include <cstdint>

#include "common.h"

extern "C" int BiasReluForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                               void *) {
  if (nparam != 3 || !AllFloat32(3, dtypes) || ndims[0] != 4 || ndims[1] != 1 || ndims[2] != 4 ||
      shapes[1][0] != shapes[0][1])
    return 1;
  const float *x = static_cast<float *>(params[0]), *b = static_cast<float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  const int64_t c = shapes[0][1], hw = shapes[0][2] * shapes[0][3];
  ParallelFor(shapes[0][0] * c, hw * kPassWork, [&](int64_t lo, int64_t hi) {
    for (int64_t plane = lo; plane < hi; ++plane) {
      const float bias = b[plane % c];
      const float *xp = x + plane * hw;
      float *yp = y + plane * hw;
      for (int64_t k = 0; k < hw; ++k) {
        const float v = xp[k] + bias;
        yp[k] = v > 0.0f ? v : 0.0f;
      }
    }
  });
  return 0;
}
