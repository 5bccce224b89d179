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
    const S xc = !(x[d] > S(0)) ? S(0) : (x[d] > S(1) ? S(1) : x[d]);  // NaN → 0: never an index outside the table
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

// --- occupancy-grid ray marching --------------------------------------------------------------------
// Cascade c covers the box centre ± half·2^c; each has G³ cells, occupied or not (one byte each).
struct Grid {
  double centre[3];
  double half[3];
  int64_t cascades;
  int64_t res;
};

// [t0, t1) where the ray is inside the outermost cascade's box, clipped to [near, far]; t1 <= t0: a miss.
NERF_HD void ray_box(const double o[3], const double d[3], const Grid& g, double near, double far, double* t0,
                     double* t1) {
  const double scale = double(int64_t(1) << (g.cascades - 1));
  double lo = near, hi = far;
  for (int a = 0; a < 3; ++a) {
    const double bmin = g.centre[a] - g.half[a] * scale, bmax = g.centre[a] + g.half[a] * scale;
    if (d[a] == 0.0) {
      if (o[a] < bmin || o[a] > bmax) hi = lo - 1.0;  // parallel to the slab and outside it
      continue;
    }
    double ta = (bmin - o[a]) / d[a], tb = (bmax - o[a]) / d[a];
    if (ta > tb) { const double tmp = ta; ta = tb; tb = tmp; }
    lo = ta > lo ? ta : lo;
    hi = tb < hi ? tb : hi;
  }
  *t0 = lo;
  *t1 = hi;
}

// Is the point in an occupied cell? (false outside every cascade)
NERF_HD bool occupied(const double p[3], const Grid& g, const uint8_t* bits) {
  double m = 0.0;
  for (int a = 0; a < 3; ++a) {
    const double r = fabs(p[a] - g.centre[a]) / g.half[a];
    m = r > m ? r : m;
  }
  int64_t c = 0;
  double scale = 1.0;
  while (m > scale && c < g.cascades) { scale *= 2.0; ++c; }
  if (c >= g.cascades) return false;
  int64_t cell[3];
  for (int a = 0; a < 3; ++a) {
    const double u = (p[a] - (g.centre[a] - g.half[a] * scale)) / (2.0 * g.half[a] * scale);
    int64_t i = int64_t(floor(u * double(g.res)));
    cell[a] = i < 0 ? 0 : (i >= g.res ? g.res - 1 : i);
  }
  return bits[((c * g.res + cell[0]) * g.res + cell[1]) * g.res + cell[2]] != 0;
}

// March one ray: steps of dt = clamp(t·cone, dt_min, dt_max) from where it enters the grid; a step
// becomes a sample [t, t + dt) when its midpoint is in an occupied cell. Writes at most `cap` samples
// when `t_out` is given; returns the number of samples.
NERF_HD int64_t march_ray(const double o[3], const double d[3], const Grid& g, const uint8_t* bits, double near,
                          double far, double dt_min, double dt_max, double cone, double* t_out, int64_t cap) {
  double t, t1;
  ray_box(o, d, g, near, far, &t, &t1);
  int64_t n = 0;
  while (t < t1) {
    double dt = t * cone;
    dt = dt < dt_min ? dt_min : (dt > dt_max ? dt_max : dt);
    const double mid = t + 0.5 * dt;
    const double p[3] = {o[0] + mid * d[0], o[1] + mid * d[1], o[2] + mid * d[2]};
    if (occupied(p, g, bits)) {
      if (t_out && n < cap) { t_out[2 * n] = t; t_out[2 * n + 1] = t + dt; }
      ++n;
    }
    t += dt;
  }
  return n;
}

}  // namespace nerf
