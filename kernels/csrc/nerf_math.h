// The NeRF ops' math, one source for the CPU and CUDA paths (kernels/nerf_reference.py is the spec).
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define NERF_HD __host__ __device__ inline
#else
#define NERF_HD inline
#endif

namespace nerf {

struct Level {
  double scale;  // N_min · b^l − 1
  int64_t res;   // ⌈scale⌉ + 1 corners per axis
  bool dense;    // res³ ≤ table size: direct indexing, else instant-NGP's spatial hash
};

NERF_HD int64_t corner_index(int64_t cx, int64_t cy, int64_t cz, const Level& lv, int64_t table_size) {
  if (lv.dense) return (cx + lv.res * (cy + lv.res * cz)) % table_size;
  const uint32_t h = uint32_t(cx) * 1u ^ uint32_t(cy) * 2654435761u ^ uint32_t(cz) * 805459861u;
  return int64_t(h % uint32_t(table_size));
}

// The 8 corners of x's cell on one level: table rows, trilinear weights and, when dw is given, the
// weights' derivatives with respect to x (zero where x was clamped to the unit cube).
template <typename S>
NERF_HD void cell_corners(const S* x, const Level& lv, int64_t table_size, int64_t idx[8], S w[8], S (*dw)[3]) {
  int64_t c[3];
  S f[3];
  bool inside[3];
  for (int d = 0; d < 3; ++d) {
    const S xc = x[d] < S(0) ? S(0) : (x[d] > S(1) ? S(1) : x[d]);
    inside[d] = x[d] > S(0) && x[d] < S(1);
    const S pos = xc * S(lv.scale) + S(0.5);
    const S cell = floor(pos);
    c[d] = int64_t(cell);
    f[d] = pos - cell;
  }
  for (int k = 0; k < 8; ++k) {
    const int o[3] = {k & 1, (k >> 1) & 1, (k >> 2) & 1};
    S wk = S(1), part[3];
    for (int d = 0; d < 3; ++d) {
      part[d] = o[d] ? f[d] : S(1) - f[d];
      wk *= part[d];
    }
    w[k] = wk;
    idx[k] = corner_index(c[0] + o[0], c[1] + o[1], c[2] + o[2], lv, table_size);
    if (dw) {
      for (int d = 0; d < 3; ++d) {
        const S other = part[(d + 1) % 3] * part[(d + 2) % 3];
        dw[k][d] = inside[d] ? (o[d] ? S(1) : S(-1)) * other * S(lv.scale) : S(0);
      }
    }
  }
}

// Compositing one ray's samples [begin, end): colour (3), opacity, depth; stops at T < t_min.
template <typename S>
NERF_HD void composite_ray(const S* sigma, const S* rgb, const S* t0, const S* t1, int64_t begin, int64_t end,
                           S t_min, S out_rgb[3], S* out_opacity, S* out_depth) {
  S T = S(1), c[3] = {S(0), S(0), S(0)}, o = S(0), dep = S(0);
  for (int64_t i = begin; i < end; ++i) {
    if (T < t_min) break;
    const S tau = sigma[i] * (t1[i] - t0[i]);
    const S decay = exp(-tau);
    const S w = T * (S(1) - decay);
    for (int ch = 0; ch < 3; ++ch) c[ch] += w * rgb[3 * i + ch];
    o += w;
    dep += w * S(0.5) * (t0[i] + t1[i]);
    T *= decay;
  }
  for (int ch = 0; ch < 3; ++ch) out_rgb[ch] = c[ch];
  *out_opacity = o;
  *out_depth = dep;
}

// Its backward: gradients to σ and colour of each sample, from the ray's output gradients and outputs.
template <typename S>
NERF_HD void composite_ray_backward(const S* sigma, const S* rgb, const S* t0, const S* t1, int64_t begin,
                                    int64_t end, S t_min, const S g_rgb[3], S g_opacity, S g_depth,
                                    const S total_rgb[3], S total_opacity, S total_depth, S* g_sigma, S* g_rgbs) {
  S T = S(1), done_rgb[3] = {S(0), S(0), S(0)}, done_o = S(0), done_d = S(0);
  int64_t i = begin;
  for (; i < end; ++i) {
    if (T < t_min) break;
    const S delta = t1[i] - t0[i];
    const S decay = exp(-sigma[i] * delta);
    const S w = T * (S(1) - decay);
    const S next = T * decay;
    const S mid = S(0.5) * (t0[i] + t1[i]);
    S g = S(0);
    for (int ch = 0; ch < 3; ++ch) {
      done_rgb[ch] += w * rgb[3 * i + ch];
      g += g_rgb[ch] * (next * rgb[3 * i + ch] - (total_rgb[ch] - done_rgb[ch]));
      g_rgbs[3 * i + ch] = w * g_rgb[ch];
    }
    done_o += w;
    done_d += w * mid;
    g += g_opacity * (next - (total_opacity - done_o)) + g_depth * (next * mid - (total_depth - done_d));
    g_sigma[i] = g * delta;
    T = next;
  }
  for (; i < end; ++i) {  // after the ray stopped: no contribution
    g_sigma[i] = S(0);
    for (int ch = 0; ch < 3; ++ch) g_rgbs[3 * i + ch] = S(0);
  }
}

}  // namespace nerf
