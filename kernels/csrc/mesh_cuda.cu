// CUDA mesh kernels; the math is mesh_math.h, shared with the CPU path. Rasterization: a thread per
// triangle tests the pixels of its box and keeps the nearest with a 64-bit atomicMin on (depth, id) — the
// minimum does not depend on the order, so the result is deterministic — then a thread per pixel
// resolves its winner. Everything else is a thread per pixel; shared gradients use atomicAdd.
#include "mesh_cuda.h"

namespace mesh {
namespace cuda {
namespace {

constexpr int BLOCK = 256;
inline unsigned blocks(int64_t n) { return unsigned((n + BLOCK - 1) / BLOCK); }
constexpr unsigned long long EMPTY = ~0ull;

// float depth → unsigned int with the same order, the triangle in the low bits (lower id wins ties)
__device__ inline unsigned long long depth_key(float d, int64_t f) {
  unsigned int b = __float_as_uint(d);
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (static_cast<unsigned long long>(b) << 32) | static_cast<unsigned long long>(f);
}

template <typename S>
__global__ void setup_k(int64_t F, int64_t W, int64_t H, const S* pos, const int32_t* tri, Tri<S>* tris, int32_t* box) {
  const int64_t f = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (f >= F) return;
  setup_and_bound(pos + 4 * int64_t(tri[3 * f]), pos + 4 * int64_t(tri[3 * f + 1]), pos + 4 * int64_t(tri[3 * f + 2]),
                  W, H, tris[f], box + 4 * f);
}

template <typename S>
__global__ void raster_k(int64_t F, int64_t W, int64_t H, const Tri<S>* tris, const int32_t* box,
                         unsigned long long* keys) {
  const int64_t f = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (f >= F) return;
  const int32_t* b = box + 4 * f;
  const Tri<S> t = tris[f];
  for (int64_t Y = b[1]; Y <= b[3]; ++Y) {
    const S py = S(ndc(Y, H));
    for (int64_t X = b[0]; X <= b[2]; ++X) {
      S e[3], d;
      if (cover(t, X, Y, S(ndc(X, W)), py, e, d)) atomicMin(keys + Y * W + X, depth_key(float(d), f));
    }
  }
}

template <typename S>
__global__ void resolve_k(int64_t N, int64_t W, int64_t H, const Tri<S>* tris, const unsigned long long* keys, S* rast,
                          S* db) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  S* r = rast + 4 * i;
  S* d = db + 4 * i;
  const unsigned long long k = keys[i];
  S e[3], depth;
  const int64_t f = k == EMPTY ? -1 : int64_t(k & 0xffffffffull);
  const S px = S(ndc(i % W, W)), py = S(ndc(i / W, H));
  if (f < 0 || !cover(tris[f], i % W, i / W, px, py, e, depth)) {
    r[0] = r[1] = r[2] = r[3] = S(0);
    d[0] = d[1] = d[2] = d[3] = S(0);
    return;
  }
  barycentrics(tris[f], e, r[0], r[1]);
  r[2] = depth;
  r[3] = S(f + 1);
  barycentric_derivatives(tris[f], e, S(2) / S(W), S(2) / S(H), d);
}

template <typename S>
__global__ void raster_bwd_k(int64_t B, int64_t V, int64_t H, int64_t W, const S* pos, const int32_t* tri,
                             const S* rast, const S* g_rast, S* g_pos) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t N = H * W;
  if (g >= B * N) return;
  const int64_t b = g / N, i = g % N;
  const int64_t f = int64_t(rast[4 * g + 3]) - 1;
  if (f < 0) return;
  const S* pp = pos + b * V * 4;
  Tri<S> t;
  setup_triangle(pp + 4 * int64_t(tri[3 * f]), pp + 4 * int64_t(tri[3 * f + 1]), pp + 4 * int64_t(tri[3 * f + 2]), t);
  S gv[3][3];
  barycentrics_backward(t, S(ndc(i % W, W)), S(ndc(i / W, H)), g_rast[4 * g], g_rast[4 * g + 1], gv);
  for (int c = 0; c < 3; ++c) {
    S* o = g_pos + (b * V + tri[3 * f + c]) * 4;
    atomicAdd(o, gv[c][0]);
    atomicAdd(o + 1, gv[c][1]);
    atomicAdd(o + 3, gv[c][2]);
  }
}

template <typename S>
__global__ void interp_fwd_k(int64_t B, int64_t N, int64_t V, int64_t C, bool shared, const S* attr, const S* rast,
                             const int32_t* tri, const S* db, S* out, S* out_da) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * N) return;
  interpolate_pixel(rast + 4 * i, attr + (shared ? 0 : (i / N) * V * C), tri, C, db ? db + 4 * i : nullptr,
                    out + i * C, out_da ? out_da + 2 * C * i : nullptr);
}

template <typename S>
__global__ void interp_bwd_k(int64_t B, int64_t N, int64_t V, int64_t C, bool shared, const S* attr, const S* rast,
                             const int32_t* tri, const S* g_out, S* g_attr, S* g_rast) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * N) return;
  const S* r = rast + 4 * i;
  const int64_t off = shared ? 0 : (i / N) * V * C;
  interpolate_pixel_backward(r, attr + off, tri, C, g_out + i * C, g_rast[4 * i], g_rast[4 * i + 1]);
  g_rast[4 * i + 2] = g_rast[4 * i + 3] = S(0);
  const int64_t f = int64_t(r[3]) - 1;
  if (f < 0) return;
  const S w[3] = {r[0], r[1], S(1) - r[0] - r[1]};
  for (int k = 0; k < 3; ++k)
    for (int64_t c = 0; c < C; ++c) atomicAdd(g_attr + off + int64_t(tri[3 * f + k]) * C + c, w[k] * g_out[i * C + c]);
}

template <typename S>
__global__ void tex_fwd_k(int64_t B, int64_t N, int64_t T, int64_t C, bool shared, const S* mips,
                          const MipLevel* levels, int L, const S* uv, const S* uv_da, int filter, int boundary, S* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * N) return;
  int64_t idx[8];
  S w[8], du[8], dv[8];
  const S* tex = mips + (shared ? 0 : (i / N) * T * C);
  const int n = pixel_taps(levels, L, uv + 2 * i, filter == 2 ? uv_da + 4 * i : nullptr, filter, boundary, idx, w, du, dv);
  for (int64_t c = 0; c < C; ++c) {
    S acc = S(0);
    for (int k = 0; k < n; ++k) acc += w[k] * tex[idx[k] * C + c];
    out[i * C + c] = acc;
  }
}

template <typename S>
__global__ void tex_bwd_k(int64_t B, int64_t N, int64_t T, int64_t C, bool shared, const S* mips,
                          const MipLevel* levels, int L, const S* uv, const S* uv_da, int filter, int boundary,
                          const S* g_out, S* g_mips, S* g_uv) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * N) return;
  int64_t idx[8];
  S w[8], du[8], dv[8];
  const int64_t off = shared ? 0 : (i / N) * T * C;
  const int n = pixel_taps(levels, L, uv + 2 * i, filter == 2 ? uv_da + 4 * i : nullptr, filter, boundary, idx, w, du, dv);
  S gu = S(0), gv = S(0);
  for (int k = 0; k < n; ++k) {
    S dot = S(0);
    for (int64_t c = 0; c < C; ++c) {
      dot += g_out[i * C + c] * mips[off + idx[k] * C + c];
      if (w[k] != S(0)) atomicAdd(g_mips + off + idx[k] * C + c, w[k] * g_out[i * C + c]);
    }
    gu += du[k] * dot;
    gv += dv[k] * dot;
  }
  g_uv[2 * i] = gu;
  g_uv[2 * i + 1] = gv;
}

template <typename S>
__global__ void sil_k(int64_t B, int64_t V, int64_t F, int64_t W, int64_t H, const S* pos, const int32_t* tri,
                      const int32_t* nbr, uint8_t* sil) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= B * F) return;
  sil[g] = face_silhouettes(pos + (g / F) * V * 4, tri, nbr, g % F, W, H);
}

template <typename S>
__global__ void aa_fwd_k(int64_t B, int64_t H, int64_t W, int64_t C, int64_t V, int64_t F, const S* color,
                         const S* rast, const S* pos, const int32_t* tri, const uint8_t* sil, S* out) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t N = H * W;
  if (g >= B * N) return;
  const int64_t b = g / N;
  antialias_pixel(color + b * N * C, rast + b * N * 4, pos + b * V * 4, tri, sil + b * F, W, H, C, g % N, out + g * C);
}

template <typename S>
__global__ void aa_bwd_k(int64_t B, int64_t H, int64_t W, int64_t C, int64_t V, int64_t F, const S* color,
                         const S* rast, const S* pos, const int32_t* tri, const uint8_t* sil, const S* g_out,
                         S* g_color, S* g_pos) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t N = H * W;
  if (g >= B * N) return;
  const int64_t b = g / N;
  int32_t vid[4];
  S part[12];
  antialias_pixel_backward(color + b * N * C, g_out + b * N * C, rast + b * N * 4, pos + b * V * 4, tri, sil + b * F, W, H, C,
                           g % N, g_color + g * C, vid, part);
  for (int k = 0; k < 4; ++k) {
    if (vid[k] < 0) continue;
    S* o = g_pos + (b * V + vid[k]) * 4;
    atomicAdd(o, part[3 * k]);
    atomicAdd(o + 1, part[3 * k + 1]);
    atomicAdd(o + 3, part[3 * k + 2]);
  }
}

}  // namespace

template <typename S>
void rasterize_fwd(int64_t B, int64_t V, int64_t F, int64_t H, int64_t W, const S* pos, const int32_t* tri, Tri<S>* tris,
                   int32_t* box, unsigned long long* keys, S* rast, S* db) {
  const int64_t N = H * W;
  for (int64_t b = 0; b < B; ++b) {
    cudaMemset(keys, 0xff, sizeof(unsigned long long) * N);
    if (F > 0) {
      setup_k<S><<<blocks(F), BLOCK>>>(F, W, H, pos + b * V * 4, tri, tris, box);
      raster_k<S><<<blocks(F), BLOCK>>>(F, W, H, tris, box, keys);
    }
    resolve_k<S><<<blocks(N), BLOCK>>>(N, W, H, tris, keys, rast + b * N * 4, db + b * N * 4);
  }
}

template <typename S>
void rasterize_bwd(int64_t B, int64_t V, int64_t H, int64_t W, const S* pos, const int32_t* tri, const S* rast,
                   const S* g_rast, S* g_pos) {
  if (B * H * W) raster_bwd_k<S><<<blocks(B * H * W), BLOCK>>>(B, V, H, W, pos, tri, rast, g_rast, g_pos);
}

template <typename S>
void interpolate_fwd(int64_t B, int64_t N, int64_t V, int64_t C, bool shared, const S* attr, const S* rast,
                     const int32_t* tri, const S* db, S* out, S* out_da) {
  if (B * N) interp_fwd_k<S><<<blocks(B * N), BLOCK>>>(B, N, V, C, shared, attr, rast, tri, db, out, out_da);
}

template <typename S>
void interpolate_bwd(int64_t B, int64_t N, int64_t V, int64_t C, bool shared, const S* attr, const S* rast,
                     const int32_t* tri, const S* g_out, S* g_attr, S* g_rast) {
  if (B * N) interp_bwd_k<S><<<blocks(B * N), BLOCK>>>(B, N, V, C, shared, attr, rast, tri, g_out, g_attr, g_rast);
}

template <typename S>
void texture_fwd(int64_t B, int64_t N, int64_t T, int64_t C, bool shared, const S* mips, const MipLevel* levels, int L,
                 const S* uv, const S* uv_da, int filter, int boundary, S* out) {
  if (B * N)
    tex_fwd_k<S><<<blocks(B * N), BLOCK>>>(B, N, T, C, shared, mips, levels, L, uv, uv_da, filter, boundary, out);
}

template <typename S>
void texture_bwd(int64_t B, int64_t N, int64_t T, int64_t C, bool shared, const S* mips, const MipLevel* levels, int L,
                 const S* uv, const S* uv_da, int filter, int boundary, const S* g_out, S* g_mips, S* g_uv) {
  if (B * N)
    tex_bwd_k<S><<<blocks(B * N), BLOCK>>>(B, N, T, C, shared, mips, levels, L, uv, uv_da, filter, boundary, g_out,
                                           g_mips, g_uv);
}

template <typename S>
void antialias_fwd(int64_t B, int64_t H, int64_t W, int64_t C, int64_t V, int64_t F, const S* color, const S* rast,
                   const S* pos, const int32_t* tri, const int32_t* nbr, uint8_t* sil, S* out) {
  if (B * F) sil_k<S><<<blocks(B * F), BLOCK>>>(B, V, F, W, H, pos, tri, nbr, sil);
  if (B * H * W) aa_fwd_k<S><<<blocks(B * H * W), BLOCK>>>(B, H, W, C, V, F, color, rast, pos, tri, sil, out);
}

template <typename S>
void antialias_bwd(int64_t B, int64_t H, int64_t W, int64_t C, int64_t V, int64_t F, const S* color, const S* rast,
                   const S* pos, const int32_t* tri, const int32_t* nbr, uint8_t* sil, const S* g_out, S* g_color,
                   S* g_pos) {
  if (B * F) sil_k<S><<<blocks(B * F), BLOCK>>>(B, V, F, W, H, pos, tri, nbr, sil);
  if (B * H * W)
    aa_bwd_k<S><<<blocks(B * H * W), BLOCK>>>(B, H, W, C, V, F, color, rast, pos, tri, sil, g_out, g_color, g_pos);
}

#define MESH_INSTANTIATE(S)                                                                                           \
  template void rasterize_fwd<S>(int64_t, int64_t, int64_t, int64_t, int64_t, const S*, const int32_t*, Tri<S>*,      \
                                 int32_t*, unsigned long long*, S*, S*);                                              \
  template void rasterize_bwd<S>(int64_t, int64_t, int64_t, int64_t, const S*, const int32_t*, const S*, const S*, S*); \
  template void interpolate_fwd<S>(int64_t, int64_t, int64_t, int64_t, bool, const S*, const S*, const int32_t*,     \
                                   const S*, S*, S*);                                                                 \
  template void interpolate_bwd<S>(int64_t, int64_t, int64_t, int64_t, bool, const S*, const S*, const int32_t*,     \
                                   const S*, S*, S*);                                                                 \
  template void texture_fwd<S>(int64_t, int64_t, int64_t, int64_t, bool, const S*, const MipLevel*, int, const S*,   \
                               const S*, int, int, S*);                                                               \
  template void texture_bwd<S>(int64_t, int64_t, int64_t, int64_t, bool, const S*, const MipLevel*, int, const S*,   \
                               const S*, int, int, const S*, S*, S*);                                                 \
  template void antialias_fwd<S>(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const S*, const S*,         \
                                 const S*, const int32_t*, const int32_t*, uint8_t*, S*);                             \
  template void antialias_bwd<S>(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const S*, const S*,         \
                                 const S*, const int32_t*, const int32_t*, uint8_t*, const S*, S*, S*);

MESH_INSTANTIATE(float)
MESH_INSTANTIATE(double)

}  // namespace cuda
}  // namespace mesh
