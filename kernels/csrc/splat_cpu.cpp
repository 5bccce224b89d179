// CPU scheduling of the Gaussian-splatting ops: threads over Gaussians or tiles through
// at::parallel_for (torch's OpenMP pool, so torch.set_num_threads applies), SIMD over the
// pixels of a tile. Every reduction runs in a fixed order, so results do not depend on the
// number of threads: the rasteriser's backward writes one gradient row per (tile, Gaussian)
// intersection and then sums each Gaussian's rows in tile order, instead of atomics.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#define SPLAT_CPU_SIMD
#include "splat_torch.h"

using namespace splat;

namespace {

// at::parallel_for runs its body inline with one thread and in an OpenMP region otherwise;
// if the compiler inlines the body into both, the two copies may contract multiply-adds
// differently and results would depend on the thread count. One out-of-line body per call
// site keeps them bit-identical.
template <typename F> __attribute__((noinline)) void run_range(const F& f, int64_t b, int64_t e) { f(b, e); }
template <typename F> void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) { run_range(f, b, e); });
}

void check(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(dim < 0 || t.dim() == dim, name, " must have ", dim, " dimensions, got ", t.dim());
}

// Sum per-item rows of width D over [0, n) in fixed chunks: the same bits for any thread count.
template <typename T, typename F> std::vector<T> chunked_sum(int64_t n, int D, F item) {
  constexpr int64_t CHUNK = 2048;
  int64_t nchunks = (n + CHUNK - 1) / CHUNK;
  std::vector<T> partial(static_cast<size_t>(std::max<int64_t>(nchunks, 1)) * D, T(0));
  parallel_for(0, nchunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c)
      for (int64_t i = c * CHUNK; i < std::min(n, (c + 1) * CHUNK); ++i) item(i, &partial[c * D]);
  });
  std::vector<T> total(D, T(0));
  for (int64_t c = 0; c < nchunks; ++c)
    for (int d = 0; d < D; ++d) total[d] += partial[c * D + d];
  return total;
}

// Stable LSD radix sort of `items` by a 32-bit key (positive floats sort as their bits), so
// equal depths keep index order, as the reference's stable argsort does.
template <typename F> void radix_sort_by_key(std::vector<int64_t>& items, F key) {
  const size_t n = items.size();
  std::vector<uint32_t> keys(n), keys2(n);
  std::vector<int64_t> tmp(n);
  for (size_t i = 0; i < n; ++i) keys[i] = key(items[i]);
  for (int shift = 0; shift < 32; shift += 16) {
    std::vector<size_t> count(65537, 0);
    for (size_t i = 0; i < n; ++i) ++count[((keys[i] >> shift) & 0xFFFF) + 1];
    for (size_t b = 0; b < 65536; ++b) count[b + 1] += count[b];
    for (size_t i = 0; i < n; ++i) {
      size_t dst = count[(keys[i] >> shift) & 0xFFFF]++;
      tmp[dst] = items[i];
      keys2[dst] = keys[i];
    }
    items.swap(tmp);
    keys.swap(keys2);
  }
}

}  // namespace

std::vector<at::Tensor> project_fwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& log_scales,
                                    const at::Tensor& viewmat, const at::Tensor& K, int64_t width, int64_t height,
                                    double near_plane, double far_plane, double eps2d, bool antialiased) {
  check(means, "means", 2); check(quats, "quats", 2); check(log_scales, "log_scales", 2);
  const int64_t N = means.size(0);
  check_shape(means, "means", N, {3}); check_shape(quats, "quats", N, {4}); check_shape(log_scales, "log_scales", N, {3});
  check_same_dtype(quats, means, "quats"); check_same_dtype(log_scales, means, "log_scales");
  Camera cam = make_camera(viewmat, K, width, height, near_plane, far_plane, eps2d, antialiased);
  auto opts = means.options();
  at::Tensor means2d = alloc({N, 2}, opts), conics = alloc({N, 3}, opts), depths = alloc({N}, opts),
             comp = alloc({N}, opts), radii = alloc({N}, opts.dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_fwd", [&] {
    using T = scalar_t;
    const T *m = means.data_ptr<T>(), *q = quats.data_ptr<T>(), *s = log_scales.data_ptr<T>();
    T *m2 = means2d.data_ptr<T>(), *co = conics.data_ptr<T>(), *de = depths.data_ptr<T>(), *cp = comp.data_ptr<T>();
    int32_t* ra = radii.data_ptr<int32_t>();
    parallel_for(0, N, 1024, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        Projected<T> o = project_one<T>(m + 3 * i, q + 4 * i, s + 3 * i, cam);
        m2[2 * i] = o.mean2d[0]; m2[2 * i + 1] = o.mean2d[1];
        co[3 * i] = o.conic[0]; co[3 * i + 1] = o.conic[1]; co[3 * i + 2] = o.conic[2];
        de[i] = o.depth; cp[i] = o.compensation; ra[i] = o.radius;
      }
    });
  });
  return {means2d, conics, depths, radii, comp};
}

std::vector<at::Tensor> project_bwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& log_scales,
                                    const at::Tensor& viewmat, const at::Tensor& K, int64_t width, int64_t height,
                                    double near_plane, double far_plane, double eps2d, bool antialiased,
                                    const at::Tensor& radii, const at::Tensor& v_means2d, const at::Tensor& v_conics,
                                    const at::Tensor& v_depths, const at::Tensor& v_comp, bool viewmat_grad) {
  for (auto* t : {&means, &quats, &log_scales, &v_means2d, &v_conics, &v_depths, &v_comp, &radii})
    check(*t, "projection input", -1);
  const int64_t N = means.size(0);
  check_shape(means, "means", N, {3}); check_shape(quats, "quats", N, {4}); check_shape(log_scales, "log_scales", N, {3});
  check_shape(radii, "radii", N, {}); check_shape(v_means2d, "v_means2d", N, {2});
  check_shape(v_conics, "v_conics", N, {3}); check_shape(v_depths, "v_depths", N, {}); check_shape(v_comp, "v_comp", N, {});
  TORCH_CHECK(radii.scalar_type() == at::kInt, "radii must be int32");
  for (auto* t : {&quats, &log_scales, &v_means2d, &v_conics, &v_depths, &v_comp}) check_same_dtype(*t, means, "gradient");
  Camera cam = make_camera(viewmat, K, width, height, near_plane, far_plane, eps2d, antialiased);
  auto opts = means.options();
  at::Tensor v_means = alloc({N, 3}, opts), v_quats = alloc({N, 4}, opts), v_ls = alloc({N, 3}, opts);
  at::Tensor v_view = at::zeros({4, 4}, opts);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_bwd", [&] {
    using T = scalar_t;
    const T *m = means.data_ptr<T>(), *q = quats.data_ptr<T>(), *s = log_scales.data_ptr<T>();
    const T *gm = v_means2d.data_ptr<T>(), *gc = v_conics.data_ptr<T>(), *gd = v_depths.data_ptr<T>(),
            *gk = v_comp.data_ptr<T>();
    const int32_t* ra = radii.data_ptr<int32_t>();
    T *vm = v_means.data_ptr<T>(), *vq = v_quats.data_ptr<T>(), *vs = v_ls.data_ptr<T>();
    auto item = [&](int64_t i, T* view_acc) {
      if (ra[i] <= 0) {
        for (int k = 0; k < 3; ++k) vm[3 * i + k] = vs[3 * i + k] = 0;
        for (int k = 0; k < 4; ++k) vq[4 * i + k] = 0;
        return;
      }
      project_one_vjp<T>(m + 3 * i, q + 4 * i, s + 3 * i, cam, gm + 2 * i, gc + 3 * i, gd[i], gk[i], vm + 3 * i,
                         vq + 4 * i, vs + 3 * i, view_acc);
    };
    if (viewmat_grad) {
      std::vector<T> total = chunked_sum<T>(N, 12, item);
      T* vv = v_view.data_ptr<T>();
      for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) vv[4 * i + j] = total[3 * i + j];
        vv[4 * i + 3] = total[9 + i];
      }
    } else {
      parallel_for(0, N, 1024, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) item(i, nullptr);
      });
    }
  });
  return {v_means, v_quats, v_ls, v_view};
}

at::Tensor sh_fwd(const at::Tensor& coeffs, const at::Tensor& means, const at::Tensor& campos, int64_t degree) {
  check(coeffs, "coeffs", 3); check(means, "means", 2);
  const int64_t N = coeffs.size(0), K = coeffs.size(1);
  check_shape(coeffs, "coeffs", N, {-1, 3}); check_shape(means, "means", N, {3}); check_same_dtype(means, coeffs, "means");
  TORCH_CHECK(campos.numel() == 3, "campos must have 3 values");
  TORCH_CHECK(degree >= 0 && degree <= 3 && K >= (degree + 1) * (degree + 1), "bad SH degree/coefficients");
  at::Tensor colors = alloc({N, 3}, coeffs.options());
  AT_DISPATCH_FLOATING_TYPES(coeffs.scalar_type(), "sh_fwd", [&] {
    using T = scalar_t;
    at::Tensor cpos = campos.to(coeffs.scalar_type()).contiguous();
    const T *c = coeffs.data_ptr<T>(), *m = means.data_ptr<T>(), *cp = cpos.data_ptr<T>();
    T* out = colors.data_ptr<T>();
    parallel_for(0, N, 1024, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sh_color_one<T>(int(degree), int(K), c + i * K * 3, m + 3 * i, cp, out + 3 * i);
    });
  });
  return colors;
}

std::vector<at::Tensor> sh_bwd(const at::Tensor& coeffs, const at::Tensor& means, const at::Tensor& campos,
                               int64_t degree, const at::Tensor& v_colors) {
  check(coeffs, "coeffs", 3); check(means, "means", 2); check(v_colors, "v_colors", 2);
  const int64_t N = coeffs.size(0), K = coeffs.size(1);
  TORCH_CHECK(degree >= 0 && degree <= 3 && K >= (degree + 1) * (degree + 1), "bad SH degree/coefficients");
  check_shape(means, "means", N, {3}); check_shape(v_colors, "v_colors", N, {3}); check_shape(coeffs, "coeffs", N, {-1, 3});
  check_same_dtype(means, coeffs, "means"); check_same_dtype(v_colors, coeffs, "v_colors");
  TORCH_CHECK(campos.numel() == 3, "campos must have 3 values");
  at::Tensor v_coeffs = alloc({N, K, 3}, coeffs.options()), v_means = alloc({N, 3}, coeffs.options());
  at::Tensor v_campos = at::zeros({3}, coeffs.options());
  AT_DISPATCH_FLOATING_TYPES(coeffs.scalar_type(), "sh_bwd", [&] {
    using T = scalar_t;
    at::Tensor cpos = campos.to(coeffs.scalar_type()).contiguous();
    const T *c = coeffs.data_ptr<T>(), *m = means.data_ptr<T>(), *cp = cpos.data_ptr<T>(), *g = v_colors.data_ptr<T>();
    T *vc = v_coeffs.data_ptr<T>(), *vm = v_means.data_ptr<T>();
    std::vector<T> total = chunked_sum<T>(N, 3, [&](int64_t i, T* acc) {
      sh_color_one_vjp<T>(int(degree), int(K), c + i * K * 3, m + 3 * i, cp, g + 3 * i, vc + i * K * 3, vm + 3 * i);
      for (int a = 0; a < 3; ++a) acc[a] -= vm[3 * i + a];  // the direction is mean − campos
    });
    T* vcp = v_campos.data_ptr<T>();
    for (int a = 0; a < 3; ++a) vcp[a] = total[a];
  });
  return {v_coeffs, v_means, v_campos};
}

// Per-tile lists front to back. Returns tile_offsets (T+1), ids (M), and the inverse map the
// backward uses: for Gaussian g, the intersections of its tiles (row-major within its tile
// rectangle) are g_inters[g_offsets[g]:g_offsets[g+1]].
std::vector<at::Tensor> bin_gaussians(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& depths,
                                      int64_t width, int64_t height) {
  check(means2d, "means2d", 2); check(radii, "radii", 1); check(depths, "depths", 1);
  const int64_t N = means2d.size(0);
  check_image_size(width, height);
  check_shape(means2d, "means2d", N, {2}); check_shape(radii, "radii", N, {}); check_shape(depths, "depths", N, {});
  TORCH_CHECK(radii.scalar_type() == at::kInt, "radii must be int32");
  check_same_dtype(depths, means2d, "depths");
  const int tiles_x = int((width + TILE - 1) / TILE), tiles_y = int((height + TILE - 1) / TILE);
  const int64_t T_count = int64_t(tiles_x) * tiles_y;
  std::vector<int> rects(4 * N);
  std::vector<int64_t> order;
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "bin_rects", [&] {
    using T = scalar_t;
    const T* m = means2d.data_ptr<T>();
    const T* d = depths.data_ptr<T>();
    const int32_t* r = radii.data_ptr<int32_t>();
    parallel_for(0, N, 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) tile_rect<T>(m + 2 * i, r[i], tiles_x, tiles_y, &rects[4 * i]);
    });
    bool positive = true;
    for (int64_t i = 0; i < N; ++i)
      if (rects[4 * i + 2] > rects[4 * i] && rects[4 * i + 3] > rects[4 * i + 1]) {
        order.push_back(i);
        positive = positive && d[i] > 0;
      }
    if (std::is_same<T, float>::value && positive) {
      radix_sort_by_key(order, [&](int64_t i) { uint32_t k; float f = float(d[i]); std::memcpy(&k, &f, 4); return k; });
    } else {
      std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return d[a] < d[b] || (d[a] == d[b] && a < b); });
    }
  });
  at::Tensor g_offsets = at::zeros({N + 1}, means2d.options().dtype(at::kLong));
  int64_t* go = g_offsets.data_ptr<int64_t>();
  std::vector<int64_t> diff(size_t(tiles_x + 1) * (tiles_y + 1), 0);
  for (int64_t i = 0; i < N; ++i) {
    const int* rc = &rects[4 * i];
    int64_t area = int64_t(std::max(0, rc[2] - rc[0])) * std::max(0, rc[3] - rc[1]);
    go[i + 1] = go[i] + area;
    if (area) {
      diff[size_t(rc[1]) * (tiles_x + 1) + rc[0]] += 1;
      diff[size_t(rc[1]) * (tiles_x + 1) + rc[2]] -= 1;
      diff[size_t(rc[3]) * (tiles_x + 1) + rc[0]] -= 1;
      diff[size_t(rc[3]) * (tiles_x + 1) + rc[2]] += 1;
    }
  }
  const int64_t M = go[N];
  at::Tensor tile_offsets = at::empty({T_count + 1}, g_offsets.options());
  int64_t* to = tile_offsets.data_ptr<int64_t>();
  to[0] = 0;
  std::vector<int64_t> row(tiles_x + 1, 0);
  for (int ty = 0; ty < tiles_y; ++ty) {
    int64_t run = 0;
    for (int tx = 0; tx < tiles_x; ++tx) {
      run += diff[size_t(ty) * (tiles_x + 1) + tx];
      row[tx] += run;  // 2D prefix sum: row carries the column sums of the rows above
      to[int64_t(ty) * tiles_x + tx + 1] = to[int64_t(ty) * tiles_x + tx] + row[tx];
    }
  }
  TORCH_CHECK(to[T_count] == M, "internal error: tile counts do not add up");
  at::Tensor ids = alloc({M}, means2d.options().dtype(at::kInt));
  at::Tensor g_inters = alloc({M}, g_offsets.options());
  int32_t* idp = ids.data_ptr<int32_t>();
  int64_t* gi = g_inters.data_ptr<int64_t>();
  // Each thread owns a band of tile rows and walks all Gaussians front to back, so every
  // tile's list comes out depth-sorted without a per-tile sort.
  parallel_for(0, tiles_y, 1, [&](int64_t yb, int64_t ye) {
    std::vector<int64_t> cursor(to + yb * tiles_x, to + ye * tiles_x);
    for (int64_t g : order) {
      const int* rc = &rects[4 * g];
      int y0 = std::max<int>(rc[1], int(yb)), y1 = std::min<int>(rc[3], int(ye));
      for (int ty = y0; ty < y1; ++ty)
        for (int tx = rc[0]; tx < rc[2]; ++tx) {
          int64_t k = cursor[(ty - yb) * tiles_x + tx]++;
          idp[k] = int32_t(g);
          gi[go[g] + int64_t(ty - rc[1]) * (rc[2] - rc[0]) + (tx - rc[0])] = k;
        }
    }
  });
  return {tile_offsets, ids, g_offsets, g_inters};
}

namespace {

constexpr int TP = TILE * TILE;

template <typename I> inline bool any_lane(const I& mask) {
  const I none = {};
  return std::memcmp(&mask, &none, sizeof(I)) != 0;
}

template <typename V> inline typename std::remove_reference<decltype(V{}[0])>::type hsum(V v, int n) {
  auto s = v[0];
  for (int i = 1; i < n; ++i) s += v[i];
  return s;
}

// One Gaussian's projected values, loaded once per tile-list entry.
template <typename T, int C> struct TileGaussian {
  T mx, my, ca, cb, cc, op, z, col[C];
  TileGaussian(const T* means2d, const T* conics, const T* colors, const T* opac, const T* depths, int32_t g)
      : mx(means2d[2 * g]), my(means2d[2 * g + 1]), ca(conics[3 * g]), cb(conics[3 * g + 1]),
        cc(conics[3 * g + 2]), op(opac[g]), z(depths[g]) {
    for (int c = 0; c < C; ++c) col[c] = colors[int64_t(g) * C + c];
  }
};

// A tile's pixels as NV vectors of NL lanes; padding pixels of edge tiles never blend.
template <typename T> struct TilePixels {
  using V = typename Vec<T>::V;
  static constexpr int NL = Vec<T>::N, NV = TP / NL;
  alignas(64) V px[NV], py[NV], inside[NV];
  TilePixels(int x0, int y0, int w, int h) {
    for (int q = 0; q < NV; ++q)
      for (int l = 0; l < NL; ++l) {
        int p = q * NL + l, xx = p % TILE, yy = p / TILE;
        px[q][l] = T(x0 + xx) + T(0.5);
        py[q][l] = T(y0 + yy) + T(0.5);
        inside[q][l] = (xx < w && yy < h) ? T(1) : T(0);
      }
  }
};

// Rows [r0, r1) and row segments [s0, s1) of a tile (segments of NL pixels) that a Gaussian
// can reach; false when it reaches none.
template <typename T, int NL>
inline bool tile_span(T mx, T my, T ca, T cb, T cc, T op, int x0, int y0, int& r0, int& r1, int& s0, int& s1) {
  T rx, ry;
  if (!alpha_box(ca, cb, cc, op, rx, ry)) return false;
  r0 = std::max(0, int(std::floor(my - ry - T(y0))));
  r1 = std::min(TILE, int(std::ceil(my + ry - T(y0))) + 1);
  s0 = std::max(0, int(std::floor((mx - rx - T(x0)) / T(NL))));
  s1 = std::min(TILE / NL, int(std::floor((mx + rx - T(x0)) / T(NL))) + 1);
  return r0 < r1 && s0 < s1;
}

template <typename T, int C>
void raster_fwd_impl(const T* means2d, const T* conics, const T* colors, const T* opac, const T* depths, const T* bg,
                     const int64_t* tile_offsets, const int32_t* ids, int W, int H, T* out_rgb, T* out_alpha,
                     T* out_depth, int32_t* out_last) {
  using V = typename Vec<T>::V;
  constexpr int NL = Vec<T>::N, NV = TP / NL;
  const int tiles_x = (W + TILE - 1) / TILE, tiles_y = (H + TILE - 1) / TILE;
  parallel_for(0, int64_t(tiles_x) * tiles_y, 1, [&](int64_t tb, int64_t te) {
    const V zero = V{}, one = zero + T(1), amax = zero + T(ALPHA_MAX), amin = zero + T(ALPHA_MIN),
            tmin = zero + T(T_MIN);
    alignas(64) V Tr[NV], acc[C][NV], accd[NV], done[NV], last[NV];
    for (int64_t t = tb; t < te; ++t) {
      const int x0 = int(t % tiles_x) * TILE, y0 = int(t / tiles_x) * TILE;
      const int w = std::min(TILE, W - x0), h = std::min(TILE, H - y0);
      TilePixels<T> pix(x0, y0, w, h);
      for (int q = 0; q < NV; ++q) {
        Tr[q] = one; accd[q] = zero; last[q] = zero;
        done[q] = one - pix.inside[q];
        for (int c = 0; c < C; ++c) acc[c][q] = zero;
      }
      const int64_t start = tile_offsets[t], end = tile_offsets[t + 1];
      for (int64_t k = start; k < end; ++k) {
        const TileGaussian<T, C> gs(means2d, conics, colors, opac, depths, ids[k]);
        const T mx = gs.mx, my = gs.my, ca = gs.ca, cb = gs.cb, cc = gs.cc, op = gs.op, z = gs.z;
        const T* col = gs.col;
        const V idx = zero + T(k - start + 1);
        int r0 = 0, r1 = 0, s0 = 0, s1 = 0;
        tile_span<T, NL>(mx, my, ca, cb, cc, op, x0, y0, r0, r1, s0, s1);
        for (int row = r0; row < r1; ++row)
        for (int q = row * (TILE / NL) + s0; q < row * (TILE / NL) + s1; ++q) {
          if (!any_lane(done[q] == zero)) continue;  // these pixels are saturated
          V sigma = pixel_sigma(pix.px[q] - mx, pix.py[q] - my, ca, cb, cc);
          V a = op * vexp(-sigma);
          V alpha = a < amax ? a : amax;
          auto valid = (sigma >= zero) & (alpha >= amin) & (done[q] == zero);
          V test = Tr[q] * (one - alpha);
          auto stop = valid & (test < tmin);
          auto blend = valid & ~stop;
          V wgt = blend ? alpha * Tr[q] : zero;
          for (int c = 0; c < C; ++c) acc[c][q] += wgt * col[c];
          accd[q] += wgt * z;
          Tr[q] = blend ? test : Tr[q];
          last[q] = blend ? idx : last[q];
          done[q] = stop ? one : done[q];
        }
        if (((k - start) & 15) == 15) {  // every pixel saturated: the rest of the list is hidden
          V m = done[0];
          for (int q = 1; q < NV; ++q) m = done[q] < m ? done[q] : m;
          T mn = m[0];
          for (int l = 1; l < NL; ++l) mn = std::min<T>(mn, m[l]);
          if (mn > 0) break;
        }
      }
      for (int q = 0; q < NV; ++q)
        for (int l = 0; l < NL; ++l) {
          const int p = q * NL + l, xx = p % TILE, yy = p / TILE;
          if (xx >= w || yy >= h) continue;
          const int64_t o = int64_t(y0 + yy) * W + (x0 + xx);
          for (int c = 0; c < C; ++c) out_rgb[o * C + c] = acc[c][q][l] + Tr[q][l] * bg[c];
          out_alpha[o] = 1 - Tr[q][l];
          out_depth[o] = accd[q][l];
          out_last[o] = int32_t(last[q][l]);
        }
    }
  });
}

// Row layout of the per-intersection gradient buffer.
template <int C> struct Row {
  static constexpr int MX = 0, MY = 1, CA = 2, CB = 3, CC = 4, COL = 5, OP = 5 + C, Z = 6 + C, AX = 7 + C,
                       AY = 8 + C, D = 9 + C;
};

// AD: the loss reaches the alpha or depth images (else their terms are skipped);
// ABS: accumulate Σ|∂L/∂mean2d| for densification.
template <typename T, int C, bool AD, bool ABS>
void raster_bwd_impl(const T* means2d, const T* conics, const T* colors, const T* opac, const T* depths, const T* bg,
                     const int64_t* tile_offsets, const int32_t* ids, int W, int H, const T* out_alpha,
                     const int32_t* out_last, const T* v_rgb, const T* v_alpha, const T* v_depth, T* buf) {
  using L = Row<C>;
  using V = typename Vec<T>::V;
  constexpr int NL = Vec<T>::N, NV = TP / NL;
  const int tiles_x = (W + TILE - 1) / TILE, tiles_y = (H + TILE - 1) / TILE;
  parallel_for(0, int64_t(tiles_x) * tiles_y, 1, [&](int64_t tb, int64_t te) {
    const V zero = V{}, one = zero + T(1), amax = zero + T(ALPHA_MAX), amin = zero + T(ALPHA_MIN);
    alignas(64) V Tr[NV], Tf[NV], R[C][NV], RD[NV], G[C][NV], gA[NV], gD[NV], last[NV];
    for (int64_t t = tb; t < te; ++t) {
      const int x0 = int(t % tiles_x) * TILE, y0 = int(t / tiles_x) * TILE;
      const int w = std::min(TILE, W - x0), h = std::min(TILE, H - y0);
      TilePixels<T> pix(x0, y0, w, h);
      int32_t max_last = 0;
      for (int q = 0; q < NV; ++q) {
        RD[q] = zero;
        for (int c = 0; c < C; ++c) R[c][q] = zero + bg[c];
        for (int l = 0; l < NL; ++l) {
          const int p = q * NL + l, xx = p % TILE, yy = p / TILE;
          if (xx < w && yy < h) {
            const int64_t o = int64_t(y0 + yy) * W + (x0 + xx);
            Tf[q][l] = Tr[q][l] = 1 - out_alpha[o];
            last[q][l] = T(out_last[o]);
            max_last = std::max(max_last, out_last[o]);
            for (int c = 0; c < C; ++c) G[c][q][l] = v_rgb[o * C + c];
            gA[q][l] = v_alpha[o];
            gD[q][l] = v_depth[o];
          } else {
            Tf[q][l] = Tr[q][l] = 1;
            last[q][l] = gA[q][l] = gD[q][l] = 0;
            for (int c = 0; c < C; ++c) G[c][q][l] = 0;
          }
        }
      }
      const int64_t start = tile_offsets[t], end = tile_offsets[t + 1];
      for (int64_t k = start + max_last; k < end; ++k)
        for (int d = 0; d < L::D; ++d) buf[k * L::D + d] = 0;
      for (int64_t k = start + max_last - 1; k >= start; --k) {
        const TileGaussian<T, C> gs(means2d, conics, colors, opac, depths, ids[k]);
        const T mx = gs.mx, my = gs.my, ca = gs.ca, cb = gs.cb, cc = gs.cc, op = gs.op, z = gs.z;
        const T* col = gs.col;
        const V idx = zero + T(k - start);
        V s_mx = zero, s_my = zero, s_ca = zero, s_cb = zero, s_cc = zero, s_op = zero, s_z = zero, s_ax = zero,
          s_ay = zero, s_col[C];
        for (int c = 0; c < C; ++c) s_col[c] = zero;
        int r0 = 0, r1 = 0, s0 = 0, s1 = 0;
        tile_span<T, NL>(mx, my, ca, cb, cc, op, x0, y0, r0, r1, s0, s1);
        for (int row = r0; row < r1; ++row)
        for (int q = row * (TILE / NL) + s0; q < row * (TILE / NL) + s1; ++q) {
          if (!any_lane(idx < last[q])) continue;  // behind every lane's last blended Gaussian
          V dx = pix.px[q] - mx, dy = pix.py[q] - my;
          V sigma = pixel_sigma(dx, dy, ca, cb, cc);
          V e = vexp(-sigma);
          V a = op * e;
          auto unclamped = a < amax;
          V alpha = unclamped ? a : amax;
          auto blend = (sigma >= zero) & (alpha >= amin) & (idx < last[q]);
          V one_m = one - alpha;
          V inv = one / one_m;
          V Ti = Tr[q] * inv;
          V wgt = blend ? alpha * Ti : zero;
          V v_a = zero;
          if (AD) v_a = gD[q] * Ti * (z - RD[q]) + gA[q] * Tf[q] * inv;
          for (int c = 0; c < C; ++c) {
            s_col[c] += wgt * G[c][q];
            v_a += G[c][q] * Ti * (col[c] - R[c][q]);
            R[c][q] = blend ? col[c] * alpha + R[c][q] * one_m : R[c][q];
          }
          if (AD) {
            s_z += wgt * gD[q];
            RD[q] = blend ? z * alpha + RD[q] * one_m : RD[q];
          }
          Tr[q] = blend ? Ti : Tr[q];
          auto live = blend & unclamped;
          V v_sigma = live ? -v_a * alpha : zero;
          s_op += live ? v_a * e : zero;
          s_ca += v_sigma * T(0.5) * dx * dx;
          s_cb += v_sigma * dx * dy;
          s_cc += v_sigma * T(0.5) * dy * dy;
          V gx = -v_sigma * (ca * dx + cb * dy), gy = -v_sigma * (cc * dy + cb * dx);
          s_mx += gx;
          s_my += gy;
          if (ABS) {
            s_ax += gx < zero ? -gx : gx;
            s_ay += gy < zero ? -gy : gy;
          }
        }
        T* row = buf + k * L::D;
        row[L::MX] = hsum(s_mx, NL); row[L::MY] = hsum(s_my, NL);
        row[L::CA] = hsum(s_ca, NL); row[L::CB] = hsum(s_cb, NL); row[L::CC] = hsum(s_cc, NL);
        for (int c = 0; c < C; ++c) row[L::COL + c] = hsum(s_col[c], NL);
        row[L::OP] = hsum(s_op, NL); row[L::Z] = hsum(s_z, NL);
        row[L::AX] = hsum(s_ax, NL); row[L::AY] = hsum(s_ay, NL);
      }
    }
  });
}

// offsets (K + 1) run from 0 to `total` and never decrease. Vectorised ATen ops: on the
// rasterizer's hot path these checks cost a fraction of a millisecond, not a serial scan.
void check_offsets(const at::Tensor& offsets, int64_t total, const char* name) {
  const int64_t K = offsets.numel() - 1;
  const int64_t* o = offsets.data_ptr<int64_t>();
  TORCH_CHECK(o[0] == 0 && o[K] == total, name, " must run from 0 to ", total);
  TORCH_CHECK(K == 0 || (offsets.slice(0, 1) >= offsets.slice(0, 0, K)).all().item<bool>(), name,
              " must not decrease");
}

// every index in [0, n)
void check_indices(const at::Tensor& idx, int64_t n, const char* name) {
  if (idx.numel() == 0) return;
  auto mm = at::aminmax(idx);
  TORCH_CHECK(std::get<0>(mm).item<int64_t>() >= 0 && std::get<1>(mm).item<int64_t>() < n, name, " out of range");
}

void check_raster_inputs(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                         const at::Tensor& opacities, const at::Tensor& depths, const at::Tensor& background,
                         const at::Tensor& tile_offsets, const at::Tensor& ids, int64_t width, int64_t height) {
  check_image_size(width, height);
  const int64_t N = means2d.size(0);
  check_shape(means2d, "means2d", N, {2}); check_shape(conics, "conics", N, {3});
  TORCH_CHECK(colors.dim() == 2 && colors.size(0) == N && colors.size(1) >= 1 && colors.size(1) <= 4,
              "colors must be (N, 1..4)");
  check_shape(opacities, "opacities", N, {}); check_shape(depths, "depths", N, {});
  TORCH_CHECK(background.numel() == colors.size(1), "background must have one value per colour channel");
  for (auto* t : {&conics, &colors, &opacities, &depths, &background}) check_same_dtype(*t, means2d, "raster input");
  const int64_t tiles = ((width + TILE - 1) / TILE) * ((height + TILE - 1) / TILE), M = ids.numel();
  check_shape(tile_offsets, "tile_offsets", tiles + 1, {});
  TORCH_CHECK(tile_offsets.scalar_type() == at::kLong && ids.scalar_type() == at::kInt && ids.dim() == 1,
              "tile_offsets must be int64 and ids int32");
  check_offsets(tile_offsets, M, "tile_offsets");
  check_indices(ids, N, "ids");
}

}  // namespace

std::vector<at::Tensor> raster_fwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                   const at::Tensor& opacities, const at::Tensor& depths, const at::Tensor& background,
                                   const at::Tensor& tile_offsets, const at::Tensor& ids, int64_t width,
                                   int64_t height) {
  for (auto* t : {&means2d, &conics, &colors, &opacities, &depths, &background, &tile_offsets, &ids})
    check(*t, "rasterize input", -1);
  check_raster_inputs(means2d, conics, colors, opacities, depths, background, tile_offsets, ids, width, height);
  const int64_t C = colors.size(1);
  auto opts = colors.options();
  at::Tensor rgb = alloc({height, width, C}, opts), alpha = alloc({height, width}, opts),
             depth = alloc({height, width}, opts), last = alloc({height, width}, opts.dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "raster_fwd", [&] {
    using T = scalar_t;
    auto run = [&](auto Cc) {
      raster_fwd_impl<T, decltype(Cc)::value>(
          means2d.data_ptr<T>(), conics.data_ptr<T>(), colors.data_ptr<T>(), opacities.data_ptr<T>(),
          depths.data_ptr<T>(), background.data_ptr<T>(), tile_offsets.data_ptr<int64_t>(), ids.data_ptr<int32_t>(),
          int(width), int(height), rgb.data_ptr<T>(), alpha.data_ptr<T>(), depth.data_ptr<T>(),
          last.data_ptr<int32_t>());
    };
    switch (C) {
      case 1: run(std::integral_constant<int, 1>()); break;
      case 2: run(std::integral_constant<int, 2>()); break;
      case 3: run(std::integral_constant<int, 3>()); break;
      default: run(std::integral_constant<int, 4>()); break;
    }
  });
  return {rgb, alpha, depth, last};
}

std::vector<at::Tensor> raster_bwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                   const at::Tensor& opacities, const at::Tensor& depths, const at::Tensor& background,
                                   const at::Tensor& tile_offsets, const at::Tensor& ids, const at::Tensor& g_offsets,
                                   const at::Tensor& g_inters, int64_t width, int64_t height, const at::Tensor& alpha,
                                   const at::Tensor& last, const at::Tensor& v_rgb, const at::Tensor& v_alpha,
                                   const at::Tensor& v_depth, bool want_absgrad) {
  for (auto* t : {&means2d, &conics, &colors, &opacities, &depths, &background, &tile_offsets, &ids, &alpha, &last,
                  &v_rgb, &v_alpha, &v_depth, &g_offsets, &g_inters})
    check(*t, "rasterize input", -1);
  check_raster_inputs(means2d, conics, colors, opacities, depths, background, tile_offsets, ids, width, height);
  check_shape(alpha, "alpha", height, {width}); check_shape(last, "last", height, {width});
  check_shape(v_rgb, "v_rgb", height, {width, colors.size(1)}); check_shape(v_alpha, "v_alpha", height, {width});
  check_shape(v_depth, "v_depth", height, {width});
  TORCH_CHECK(last.scalar_type() == at::kInt, "last must be int32");
  for (auto* t : {&alpha, &v_rgb, &v_alpha, &v_depth}) check_same_dtype(*t, colors, "image gradient");
  check_shape(g_offsets, "g_offsets", means2d.size(0) + 1, {}); check_shape(g_inters, "g_inters", ids.size(0), {});
  TORCH_CHECK(g_offsets.scalar_type() == at::kLong && g_inters.scalar_type() == at::kLong,
              "g_offsets and g_inters must be int64");
  check_offsets(g_offsets, ids.size(0), "g_offsets");
  check_indices(g_inters, ids.size(0), "g_inters");
  const bool ad = v_alpha.ne(0).any().item<bool>() || v_depth.ne(0).any().item<bool>();
  const int64_t N = means2d.size(0), C = colors.size(1), M = ids.size(0);
  auto opts = colors.options();
  at::Tensor v_means2d = alloc({N, 2}, opts), v_conics = alloc({N, 3}, opts), v_colors = alloc({N, C}, opts),
             v_opac = alloc({N}, opts), v_depths = alloc({N}, opts), absgrad = alloc({N, 2}, opts);
  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "raster_bwd", [&] {
    using T = scalar_t;
    auto run = [&](auto Cc) {
      constexpr int CC = decltype(Cc)::value;
      using L = Row<CC>;
      std::vector<T> buf(size_t(M) * L::D);
      auto impl = ad ? (want_absgrad ? raster_bwd_impl<T, CC, true, true> : raster_bwd_impl<T, CC, true, false>)
                     : (want_absgrad ? raster_bwd_impl<T, CC, false, true> : raster_bwd_impl<T, CC, false, false>);
      impl(means2d.data_ptr<T>(), conics.data_ptr<T>(), colors.data_ptr<T>(), opacities.data_ptr<T>(),
           depths.data_ptr<T>(), background.data_ptr<T>(), tile_offsets.data_ptr<int64_t>(), ids.data_ptr<int32_t>(),
           int(width), int(height), alpha.data_ptr<T>(), last.data_ptr<int32_t>(), v_rgb.data_ptr<T>(),
           v_alpha.data_ptr<T>(), v_depth.data_ptr<T>(), buf.data());
      const int64_t* go = g_offsets.data_ptr<int64_t>();
      const int64_t* gi = g_inters.data_ptr<int64_t>();
      T *vm = v_means2d.data_ptr<T>(), *vc = v_conics.data_ptr<T>(), *vcol = v_colors.data_ptr<T>(),
        *vo = v_opac.data_ptr<T>(), *vd = v_depths.data_ptr<T>(), *ab = absgrad.data_ptr<T>();
      parallel_for(0, N, 1024, [&](int64_t b, int64_t e) {
        for (int64_t g = b; g < e; ++g) {
          T s[L::D] = {};
          for (int64_t j = go[g]; j < go[g + 1]; ++j) {
            const T* row = &buf[size_t(gi[j]) * L::D];
            for (int d = 0; d < L::D; ++d) s[d] += row[d];
          }
          vm[2 * g] = s[L::MX]; vm[2 * g + 1] = s[L::MY];
          vc[3 * g] = s[L::CA]; vc[3 * g + 1] = s[L::CB]; vc[3 * g + 2] = s[L::CC];
          for (int c = 0; c < CC; ++c) vcol[g * CC + c] = s[L::COL + c];
          vo[g] = s[L::OP]; vd[g] = s[L::Z]; ab[2 * g] = s[L::AX]; ab[2 * g + 1] = s[L::AY];
        }
      });
    };
    switch (C) {
      case 1: run(std::integral_constant<int, 1>()); break;
      case 2: run(std::integral_constant<int, 2>()); break;
      case 3: run(std::integral_constant<int, 3>()); break;
      default: run(std::integral_constant<int, 4>()); break;
    }
  });
  return {v_means2d, v_conics, v_colors, v_opac, v_depths, absgrad};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { SPLAT_DEFINE_MODULE(m); }
