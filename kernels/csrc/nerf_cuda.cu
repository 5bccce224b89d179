// CUDA NeRF kernels: one thread per (point, level) for the hash encoding, one per ray for
// compositing; the math is nerf_math.h, shared with the CPU path.
#include "nerf_cuda.h"

namespace nerf {
namespace cuda {
namespace {

constexpr int BLOCK = 256;
inline unsigned blocks(int64_t n) { return unsigned((n + BLOCK - 1) / BLOCK); }

template <typename T>
__global__ void hash_fwd_k(int64_t N, int64_t L, int64_t Tsize, int64_t F, const T* x, const T* table,
                           const Level* levels, T* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N * L) return;
  const int64_t n = i / L, l = i % L;
  int64_t idx[8];
  T w[8];
  cell_corners<T>(x + 3 * n, levels[l], Tsize, idx, w, nullptr);
  T* o = out + n * L * F + l * F;
  for (int64_t f = 0; f < F; ++f) {
    T acc = T(0);
    for (int k = 0; k < 8; ++k) acc += w[k] * table[(l * Tsize + idx[k]) * F + f];
    o[f] = acc;
  }
}

template <typename T>
__global__ void hash_bwd_k(int64_t N, int64_t L, int64_t Tsize, int64_t F, const T* x, const T* table,
                           const Level* levels, const T* grad_out, T* g_table, T* g_x) {
  const int64_t n = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= N) return;
  int64_t idx[8];
  T w[8], dw[8][3];
  T acc[3] = {T(0), T(0), T(0)};
  for (int64_t l = 0; l < L; ++l) {
    cell_corners<T>(x + 3 * n, levels[l], Tsize, idx, w, g_x ? dw : nullptr);
    const T* g = grad_out + n * L * F + l * F;
    for (int k = 0; k < 8; ++k) {
      T* row = g_table + (l * Tsize + idx[k]) * F;
      T dot = T(0);
      for (int64_t f = 0; f < F; ++f) {
        atomicAdd(row + f, w[k] * g[f]);
        if (g_x) dot += table[(l * Tsize + idx[k]) * F + f] * g[f];
      }
      if (g_x)
        for (int d = 0; d < 3; ++d) acc[d] += dw[k][d] * dot;
    }
  }
  if (g_x)
    for (int d = 0; d < 3; ++d) g_x[3 * n + d] = acc[d];
}

template <typename T>
__global__ void composite_fwd_k(int64_t R, const T* sigma, const T* rgb, const T* t0, const T* t1,
                                const int64_t* offsets, T t_min, T* out_rgb, T* out_opacity, T* out_depth) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= R) return;
  composite_ray<T>(sigma, rgb, t0, t1, offsets[r], offsets[r + 1], t_min, out_rgb + 3 * r, out_opacity + r,
                   out_depth + r);
}

template <typename T>
__global__ void composite_bwd_k(int64_t R, const T* sigma, const T* rgb, const T* t0, const T* t1,
                                const int64_t* offsets, T t_min, const T* out_rgb, const T* out_opacity,
                                const T* out_depth, const T* g_rgb, const T* g_opacity, const T* g_depth, T* g_sigma,
                                T* g_rgbs) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= R) return;
  composite_ray_backward<T>(sigma, rgb, t0, t1, offsets[r], offsets[r + 1], t_min, g_rgb + 3 * r, g_opacity[r],
                            g_depth[r], out_rgb + 3 * r, out_opacity[r], out_depth[r], g_sigma, g_rgbs);
}

__global__ void march_count_k(int64_t R, const double* o, const double* d, const double* near, const double* far,
                              Grid g, const uint8_t* bits, double dt_min, double dt_max, double cone, int64_t* counts) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= R) return;
  counts[r] = march_ray(o + 3 * r, d + 3 * r, g, bits, near[r], far[r], dt_min, dt_max, cone, nullptr, 0);
}

__global__ void march_fill_k(int64_t R, const double* o, const double* d, const double* near, const double* far,
                             Grid g, const uint8_t* bits, double dt_min, double dt_max, double cone,
                             const int64_t* offsets, int64_t* ray_indices, double* t) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= R) return;
  const int64_t begin = offsets[r], n = offsets[r + 1] - begin;
  march_ray(o + 3 * r, d + 3 * r, g, bits, near[r], far[r], dt_min, dt_max, cone, t + 2 * begin, n);
  for (int64_t i = 0; i < n; ++i) ray_indices[begin + i] = r;
}

}  // namespace

void march_count(int64_t R, const double* o, const double* d, const double* near, const double* far, const Grid& g,
                 const uint8_t* bits, double dt_min, double dt_max, double cone, int64_t* counts) {
  if (R) march_count_k<<<blocks(R), BLOCK>>>(R, o, d, near, far, g, bits, dt_min, dt_max, cone, counts);
}

void march_fill(int64_t R, const double* o, const double* d, const double* near, const double* far, const Grid& g,
                const uint8_t* bits, double dt_min, double dt_max, double cone, const int64_t* offsets,
                int64_t* ray_indices, double* t) {
  if (R) march_fill_k<<<blocks(R), BLOCK>>>(R, o, d, near, far, g, bits, dt_min, dt_max, cone, offsets, ray_indices, t);
}

template <typename T>
void hash_encode_fwd(int64_t N, int64_t L, int64_t Tsize, int64_t F, const T* x, const T* table, const Level* levels,
                     T* out) {
  if (N * L) hash_fwd_k<T><<<blocks(N * L), BLOCK>>>(N, L, Tsize, F, x, table, levels, out);
}

template <typename T>
void hash_encode_bwd(int64_t N, int64_t L, int64_t Tsize, int64_t F, const T* x, const T* table, const Level* levels,
                     const T* grad_out, T* g_table, T* g_x) {
  if (N) hash_bwd_k<T><<<blocks(N), BLOCK>>>(N, L, Tsize, F, x, table, levels, grad_out, g_table, g_x);
}

template <typename T>
void composite_fwd(int64_t R, const T* sigma, const T* rgb, const T* t0, const T* t1, const int64_t* offsets, T t_min,
                   T* out_rgb, T* out_opacity, T* out_depth) {
  if (R) composite_fwd_k<T><<<blocks(R), BLOCK>>>(R, sigma, rgb, t0, t1, offsets, t_min, out_rgb, out_opacity, out_depth);
}

template <typename T>
void composite_bwd(int64_t R, const T* sigma, const T* rgb, const T* t0, const T* t1, const int64_t* offsets, T t_min,
                   const T* out_rgb, const T* out_opacity, const T* out_depth, const T* g_rgb, const T* g_opacity,
                   const T* g_depth, T* g_sigma, T* g_rgbs) {
  if (R)
    composite_bwd_k<T><<<blocks(R), BLOCK>>>(R, sigma, rgb, t0, t1, offsets, t_min, out_rgb, out_opacity, out_depth,
                                             g_rgb, g_opacity, g_depth, g_sigma, g_rgbs);
}

#define NERF_INSTANTIATE(T)                                                                                        \
  template void hash_encode_fwd<T>(int64_t, int64_t, int64_t, int64_t, const T*, const T*, const Level*, T*);      \
  template void hash_encode_bwd<T>(int64_t, int64_t, int64_t, int64_t, const T*, const T*, const Level*, const T*, \
                                   T*, T*);                                                                        \
  template void composite_fwd<T>(int64_t, const T*, const T*, const T*, const T*, const int64_t*, T, T*, T*, T*);  \
  template void composite_bwd<T>(int64_t, const T*, const T*, const T*, const T*, const int64_t*, T, const T*,     \
                                 const T*, const T*, const T*, const T*, const T*, T*, T*);
NERF_INSTANTIATE(float)
NERF_INSTANTIATE(double)

}  // namespace cuda
}  // namespace nerf
