// CUDA scheduling of the Gaussian-splatting ops. The math is splat_math.h, shared with the
// CPU path; here a thread handles a Gaussian (projection, SH) or a pixel (compositing, a
// 16x16 block per tile), binning is a radix sort of (tile, depth) keys, and the backward
// sums per-Gaussian gradients with warp reductions and atomics.
#include <cuda_runtime.h>

#include <cub/cub.cuh>

#include "splat_cuda.h"

namespace splat {
namespace cuda {
namespace {

constexpr int BLOCK = 256;
inline int blocks(int64_t n) { return int((n + BLOCK - 1) / BLOCK); }

template <typename T>
__global__ void project_fwd_k(int64_t N, const T* means, const T* quats, const T* ls, Camera cam, T* means2d,
                              T* conics, T* depths, int32_t* radii, T* comp) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  Projected<T> o = project_one<T>(means + 3 * i, quats + 4 * i, ls + 3 * i, cam);
  means2d[2 * i] = o.mean2d[0]; means2d[2 * i + 1] = o.mean2d[1];
  conics[3 * i] = o.conic[0]; conics[3 * i + 1] = o.conic[1]; conics[3 * i + 2] = o.conic[2];
  depths[i] = o.depth; comp[i] = o.compensation; radii[i] = o.radius;
}

template <typename T>
__global__ void project_bwd_k(int64_t N, const T* means, const T* quats, const T* ls, Camera cam,
                              const int32_t* radii, const T* gm, const T* gc, const T* gd, const T* gk, T* vm, T* vq,
                              T* vs, T* v_view) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  if (radii[i] <= 0) {
    for (int k = 0; k < 3; ++k) vm[3 * i + k] = vs[3 * i + k] = 0;
    for (int k = 0; k < 4; ++k) vq[4 * i + k] = 0;
    return;
  }
  T view[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  project_one_vjp<T>(means + 3 * i, quats + 4 * i, ls + 3 * i, cam, gm + 2 * i, gc + 3 * i, gd[i], gk[i],
                     vm + 3 * i, vq + 4 * i, vs + 3 * i, v_view ? view : nullptr);
  if (v_view)
    for (int k = 0; k < 12; ++k) atomicAdd(v_view + k, view[k]);
}

template <typename T>
__global__ void sh_fwd_k(int64_t N, int K, int degree, const T* coeffs, const T* means, const T* campos, T* colors) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < N) sh_color_one<T>(degree, K, coeffs + i * K * 3, means + 3 * i, campos, colors + 3 * i);
}

template <typename T>
__global__ void sh_bwd_k(int64_t N, int K, int degree, const T* coeffs, const T* means, const T* campos,
                         const T* v_colors, T* v_coeffs, T* v_means, T* v_campos) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  sh_color_one_vjp<T>(degree, K, coeffs + i * K * 3, means + 3 * i, campos, v_colors + 3 * i, v_coeffs + i * K * 3,
                      v_means + 3 * i);
  for (int a = 0; a < 3; ++a) atomicAdd(v_campos + a, -v_means[3 * i + a]);
}

template <typename T>
__global__ void bin_counts_k(int64_t N, const T* means2d, const int32_t* radii, int tiles_x, int tiles_y,
                             int64_t* counts) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  int r[4];
  tile_rect<T>(means2d + 2 * i, radii[i], tiles_x, tiles_y, r);
  counts[i] = int64_t(max(0, r[2] - r[0])) * max(0, r[3] - r[1]);
}

// Key: tile index in the high 32 bits, the depth's float bits (positive floats sort as
// unsigned integers) in the low 32; Gaussians emit in index order and the sort is stable.
template <typename T>
__global__ void emit_keys_k(int64_t N, const T* means2d, const int32_t* radii, const T* depths, int tiles_x,
                            int tiles_y, const int64_t* g_offsets, uint64_t* keys, int32_t* values) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  int r[4];
  tile_rect<T>(means2d + 2 * i, radii[i], tiles_x, tiles_y, r);
  uint32_t dbits = __float_as_uint(float(depths[i]));
  int64_t k = g_offsets[i];
  for (int ty = r[1]; ty < r[3]; ++ty)
    for (int tx = r[0]; tx < r[2]; ++tx) {
      keys[k] = (uint64_t(uint32_t(ty * tiles_x + tx)) << 32) | dbits;
      values[k] = int32_t(i);
      ++k;
    }
}

__global__ void tile_ranges_k(int64_t M, int64_t T_count, const uint64_t* keys, int64_t* tile_offsets) {
  int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= M) return;
  int64_t tile = int64_t(keys[k] >> 32);
  int64_t prev = k == 0 ? -1 : int64_t(keys[k - 1] >> 32);
  for (int64_t t = prev + 1; t <= tile; ++t) tile_offsets[t] = k;
  if (k == M - 1)
    for (int64_t t = tile + 1; t <= T_count; ++t) tile_offsets[t] = M;
}

template <typename T, int C>
__global__ void raster_fwd_k(int W, int H, int tiles_x, const T* means2d, const T* conics, const T* colors,
                             const T* opac, const T* depths, const T* bg, const int64_t* tile_offsets,
                             const int32_t* ids, T* out_rgb, T* out_alpha, T* out_depth, int32_t* out_last) {
  const int tile = blockIdx.x;
  const int x = (tile % tiles_x) * TILE + int(threadIdx.x) % TILE;
  const int y = (tile / tiles_x) * TILE + int(threadIdx.x) / TILE;
  const bool inside = x < W && y < H;
  const T px = T(x) + T(0.5), py = T(y) + T(0.5);
  const int64_t start = tile_offsets[tile], end = tile_offsets[tile + 1];
  __shared__ int32_t s_id[BLOCK];
  __shared__ T s_g[BLOCK][6];  // mean x, mean y, conic a, b, c, opacity
  T Tr = 1, acc[C], accd = 0;
  for (int c = 0; c < C; ++c) acc[c] = 0;
  int32_t last = 0;
  bool done = !inside;
  for (int64_t b = start; b < end; b += BLOCK) {
    if (__syncthreads_count(!done) == 0) break;
    int64_t k = b + threadIdx.x;
    if (k < end) {
      int32_t g = ids[k];
      s_id[threadIdx.x] = g;
      s_g[threadIdx.x][0] = means2d[2 * g]; s_g[threadIdx.x][1] = means2d[2 * g + 1];
      s_g[threadIdx.x][2] = conics[3 * g]; s_g[threadIdx.x][3] = conics[3 * g + 1];
      s_g[threadIdx.x][4] = conics[3 * g + 2]; s_g[threadIdx.x][5] = opac[g];
    }
    __syncthreads();
    const int n = int(min(int64_t(BLOCK), end - b));
    for (int j = 0; j < n && !done; ++j) {
      T sigma = pixel_sigma<T, T>(px - s_g[j][0], py - s_g[j][1], s_g[j][2], s_g[j][3], s_g[j][4]);
      T a = s_g[j][5] * fast_exp(-sigma);
      T alpha = a < T(ALPHA_MAX) ? a : T(ALPHA_MAX);
      if (sigma < 0 || alpha < T(ALPHA_MIN)) continue;
      T test = Tr * (1 - alpha);
      if (test < T(T_MIN)) { done = true; break; }
      const int32_t g = s_id[j];
      const T w = alpha * Tr;
      for (int c = 0; c < C; ++c) acc[c] += w * colors[int64_t(g) * C + c];
      accd += w * depths[g];
      Tr = test;
      last = int32_t(b - start) + j + 1;
    }
  }
  if (!inside) return;
  const int64_t o = int64_t(y) * W + x;
  for (int c = 0; c < C; ++c) out_rgb[o * C + c] = acc[c] + Tr * bg[c];
  out_alpha[o] = 1 - Tr;
  out_depth[o] = accd;
  out_last[o] = last;
}

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

template <typename T, int C>
__global__ void raster_bwd_k(int W, int H, int tiles_x, const T* means2d, const T* conics, const T* colors,
                             const T* opac, const T* depths, const T* bg, const int64_t* tile_offsets,
                             const int32_t* ids, const T* out_alpha, const int32_t* out_last, const T* v_rgb,
                             const T* v_alpha, const T* v_depth, T* vm, T* vc, T* vcol, T* vo, T* vd, T* absg) {
  const int tile = blockIdx.x;
  const int x = (tile % tiles_x) * TILE + int(threadIdx.x) % TILE;
  const int y = (tile / tiles_x) * TILE + int(threadIdx.x) / TILE;
  const bool inside = x < W && y < H;
  const T px = T(x) + T(0.5), py = T(y) + T(0.5);
  const int64_t o = inside ? int64_t(y) * W + x : 0;
  const T Tf = inside ? 1 - out_alpha[o] : T(1);
  const int32_t last = inside ? out_last[o] : 0;
  T G[C], R[C];
  for (int c = 0; c < C; ++c) {
    G[c] = inside ? v_rgb[o * C + c] : T(0);
    R[c] = bg[c];
  }
  const T gA = inside ? v_alpha[o] : T(0), gD = inside ? v_depth[o] : T(0);
  T Tr = Tf, RD = 0;
  __shared__ int32_t s_max;
  if (threadIdx.x == 0) s_max = 0;
  __syncthreads();
  atomicMax(&s_max, last);
  __syncthreads();
  const int64_t start = tile_offsets[tile];
  __shared__ int32_t s_id[BLOCK];
  __shared__ T s_g[BLOCK][7];  // mean x, y, conic a, b, c, opacity, depth
  for (int64_t top = start + s_max; top > start; top -= BLOCK) {
    const int n = int(min(int64_t(BLOCK), top - start));
    __syncthreads();
    if (int(threadIdx.x) < n) {
      int64_t k = top - 1 - threadIdx.x;  // slot j holds the j-th Gaussian counting back from top
      int32_t g = ids[k];
      s_id[threadIdx.x] = g;
      s_g[threadIdx.x][0] = means2d[2 * g]; s_g[threadIdx.x][1] = means2d[2 * g + 1];
      s_g[threadIdx.x][2] = conics[3 * g]; s_g[threadIdx.x][3] = conics[3 * g + 1];
      s_g[threadIdx.x][4] = conics[3 * g + 2]; s_g[threadIdx.x][5] = opac[g]; s_g[threadIdx.x][6] = depths[g];
    }
    __syncthreads();
    for (int j = 0; j < n; ++j) {
      const int32_t idx = int32_t(top - 1 - j - start);
      const T dx = px - s_g[j][0], dy = py - s_g[j][1];
      const T ca = s_g[j][2], cb = s_g[j][3], cc = s_g[j][4];
      const T sigma = pixel_sigma<T, T>(dx, dy, ca, cb, cc);
      const T e = fast_exp(-sigma);
      const T a = s_g[j][5] * e;
      const bool unclamped = a < T(ALPHA_MAX);
      const T alpha = unclamped ? a : T(ALPHA_MAX);
      const bool blend = inside && idx < last && sigma >= 0 && alpha >= T(ALPHA_MIN);
      const int32_t g = s_id[j];
      T g_col[C], g_mx = 0, g_my = 0, g_ca = 0, g_cb = 0, g_cc = 0, g_op = 0, g_z = 0;
      for (int c = 0; c < C; ++c) g_col[c] = 0;
      if (blend) {
        const T one_m = 1 - alpha, Ti = Tr / one_m, w = alpha * Ti, z = s_g[j][6];
        T v_a = gD * Ti * (z - RD) + gA * Tf / one_m;
        for (int c = 0; c < C; ++c) {
          const T col = colors[int64_t(g) * C + c];
          g_col[c] = w * G[c];
          v_a += G[c] * Ti * (col - R[c]);
          R[c] = col * alpha + R[c] * one_m;
        }
        g_z = w * gD;
        RD = z * alpha + RD * one_m;
        Tr = Ti;
        if (unclamped) {
          const T v_sigma = -v_a * alpha;
          g_op = v_a * e;
          g_ca = v_sigma * T(0.5) * dx * dx;
          g_cb = v_sigma * dx * dy;
          g_cc = v_sigma * T(0.5) * dy * dy;
          g_mx = -v_sigma * (ca * dx + cb * dy);
          g_my = -v_sigma * (cc * dy + cb * dx);
        }
      }
      // every thread of the block sees the same Gaussian j: sum over the warp, one atomic each
      const T ax = warp_sum(g_mx < 0 ? -g_mx : g_mx), ay = warp_sum(g_my < 0 ? -g_my : g_my);
      g_mx = warp_sum(g_mx); g_my = warp_sum(g_my);
      g_ca = warp_sum(g_ca); g_cb = warp_sum(g_cb); g_cc = warp_sum(g_cc);
      g_op = warp_sum(g_op); g_z = warp_sum(g_z);
      for (int c = 0; c < C; ++c) g_col[c] = warp_sum(g_col[c]);
      if ((threadIdx.x & 31) == 0) {
        atomicAdd(vm + 2 * g, g_mx); atomicAdd(vm + 2 * g + 1, g_my);
        atomicAdd(vc + 3 * g, g_ca); atomicAdd(vc + 3 * g + 1, g_cb); atomicAdd(vc + 3 * g + 2, g_cc);
        for (int c = 0; c < C; ++c) atomicAdd(vcol + int64_t(g) * C + c, g_col[c]);
        atomicAdd(vo + g, g_op); atomicAdd(vd + g, g_z);
        atomicAdd(absg + 2 * g, ax); atomicAdd(absg + 2 * g + 1, ay);
      }
    }
  }
}

template <typename T, typename F> void by_channels(int C, F f) {
  switch (C) {
    case 1: f(std::integral_constant<int, 1>()); break;
    case 2: f(std::integral_constant<int, 2>()); break;
    case 3: f(std::integral_constant<int, 3>()); break;
    default: f(std::integral_constant<int, 4>()); break;
  }
}

}  // namespace

template <typename T>
void project_fwd(int64_t N, const T* means, const T* quats, const T* ls, const Camera& cam, T* means2d, T* conics,
                 T* depths, int32_t* radii, T* comp) {
  if (N) project_fwd_k<T><<<blocks(N), BLOCK>>>(N, means, quats, ls, cam, means2d, conics, depths, radii, comp);
}

template <typename T>
void project_bwd(int64_t N, const T* means, const T* quats, const T* ls, const Camera& cam, const int32_t* radii,
                 const T* gm, const T* gc, const T* gd, const T* gk, T* vm, T* vq, T* vs, T* v_view) {
  if (N) project_bwd_k<T><<<blocks(N), BLOCK>>>(N, means, quats, ls, cam, radii, gm, gc, gd, gk, vm, vq, vs, v_view);
}

template <typename T>
void sh_fwd(int64_t N, int K, int degree, const T* coeffs, const T* means, const T* campos, T* colors) {
  if (N) sh_fwd_k<T><<<blocks(N), BLOCK>>>(N, K, degree, coeffs, means, campos, colors);
}

template <typename T>
void sh_bwd(int64_t N, int K, int degree, const T* coeffs, const T* means, const T* campos, const T* v_colors,
            T* v_coeffs, T* v_means, T* v_campos) {
  if (N) sh_bwd_k<T><<<blocks(N), BLOCK>>>(N, K, degree, coeffs, means, campos, v_colors, v_coeffs, v_means, v_campos);
}

template <typename T>
void bin_counts(int64_t N, const T* means2d, const int32_t* radii, int width, int height, int64_t* counts) {
  const int tiles_x = (width + TILE - 1) / TILE, tiles_y = (height + TILE - 1) / TILE;
  if (N) bin_counts_k<T><<<blocks(N), BLOCK>>>(N, means2d, radii, tiles_x, tiles_y, counts);
}

void exclusive_scan(int64_t N, const int64_t* counts, int64_t* offsets) {
  cudaMemsetAsync(offsets, 0, sizeof(int64_t));
  if (!N) return;
  size_t bytes = 0;
  cub::DeviceScan::InclusiveSum(nullptr, bytes, counts, offsets + 1, N);
  void* tmp = nullptr;
  cudaMallocAsync(&tmp, bytes, 0);
  cub::DeviceScan::InclusiveSum(tmp, bytes, counts, offsets + 1, N);
  cudaFreeAsync(tmp, 0);
}

template <typename T>
void bin_sort(int64_t N, int64_t M, const T* means2d, const int32_t* radii, const T* depths, int width, int height,
              const int64_t* g_offsets, int32_t* ids, int64_t* tile_offsets) {
  const int tiles_x = (width + TILE - 1) / TILE, tiles_y = (height + TILE - 1) / TILE;
  const int64_t T_count = int64_t(tiles_x) * tiles_y;
  cudaMemsetAsync(tile_offsets, 0, sizeof(int64_t) * (T_count + 1));
  if (!M) return;
  uint64_t *keys = nullptr, *keys_sorted = nullptr;
  int32_t* values = nullptr;
  cudaMallocAsync(&keys, sizeof(uint64_t) * M, 0);
  cudaMallocAsync(&keys_sorted, sizeof(uint64_t) * M, 0);
  cudaMallocAsync(&values, sizeof(int32_t) * M, 0);
  emit_keys_k<T><<<blocks(N), BLOCK>>>(N, means2d, radii, depths, tiles_x, tiles_y, g_offsets, keys, values);
  int end_bit = 32;  // tile bits above the 32 depth bits
  while ((int64_t(1) << (end_bit - 32)) < T_count) ++end_bit;
  size_t bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys, keys_sorted, values, ids, M, 0, end_bit);
  void* tmp = nullptr;
  cudaMallocAsync(&tmp, bytes, 0);
  cub::DeviceRadixSort::SortPairs(tmp, bytes, keys, keys_sorted, values, ids, M, 0, end_bit);
  tile_ranges_k<<<blocks(M), BLOCK>>>(M, T_count, keys_sorted, tile_offsets);
  cudaFreeAsync(tmp, 0);
  cudaFreeAsync(keys, 0);
  cudaFreeAsync(keys_sorted, 0);
  cudaFreeAsync(values, 0);
}

template <typename T>
void raster_fwd(int64_t N, int C, const T* means2d, const T* conics, const T* colors, const T* opac, const T* depths,
                const T* bg, const int64_t* tile_offsets, const int32_t* ids, int W, int H, T* rgb, T* alpha,
                T* depth, int32_t* last) {
  const int tiles_x = (W + TILE - 1) / TILE, tiles_y = (H + TILE - 1) / TILE;
  by_channels<T>(C, [&](auto Cc) {
    raster_fwd_k<T, decltype(Cc)::value><<<tiles_x * tiles_y, BLOCK>>>(
        W, H, tiles_x, means2d, conics, colors, opac, depths, bg, tile_offsets, ids, rgb, alpha, depth, last);
  });
  (void)N;
}

template <typename T>
void raster_bwd(int64_t N, int C, const T* means2d, const T* conics, const T* colors, const T* opac, const T* depths,
                const T* bg, const int64_t* tile_offsets, const int32_t* ids, int W, int H, const T* alpha,
                const int32_t* last, const T* v_rgb, const T* v_alpha, const T* v_depth, T* vm, T* vc, T* vcol,
                T* vo, T* vd, T* absg) {
  const int tiles_x = (W + TILE - 1) / TILE, tiles_y = (H + TILE - 1) / TILE;
  by_channels<T>(C, [&](auto Cc) {
    raster_bwd_k<T, decltype(Cc)::value><<<tiles_x * tiles_y, BLOCK>>>(
        W, H, tiles_x, means2d, conics, colors, opac, depths, bg, tile_offsets, ids, alpha, last, v_rgb, v_alpha,
        v_depth, vm, vc, vcol, vo, vd, absg);
  });
  (void)N;
}

#define INSTANTIATE(T)                                                                                          \
  template void project_fwd<T>(int64_t, const T*, const T*, const T*, const Camera&, T*, T*, T*, int32_t*, T*); \
  template void project_bwd<T>(int64_t, const T*, const T*, const T*, const Camera&, const int32_t*, const T*,  \
                               const T*, const T*, const T*, T*, T*, T*, T*);                                    \
  template void sh_fwd<T>(int64_t, int, int, const T*, const T*, const T*, T*);                                 \
  template void sh_bwd<T>(int64_t, int, int, const T*, const T*, const T*, const T*, T*, T*, T*);               \
  template void bin_counts<T>(int64_t, const T*, const int32_t*, int, int, int64_t*);                           \
  template void bin_sort<T>(int64_t, int64_t, const T*, const int32_t*, const T*, int, int, const int64_t*,     \
                            int32_t*, int64_t*);                                                                 \
  template void raster_fwd<T>(int64_t, int, const T*, const T*, const T*, const T*, const T*, const T*,         \
                              const int64_t*, const int32_t*, int, int, T*, T*, T*, int32_t*);                   \
  template void raster_bwd<T>(int64_t, int, const T*, const T*, const T*, const T*, const T*, const T*,         \
                              const int64_t*, const int32_t*, int, int, const T*, const int32_t*, const T*,     \
                              const T*, const T*, T*, T*, T*, T*, T*, T*);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace cuda
}  // namespace splat
