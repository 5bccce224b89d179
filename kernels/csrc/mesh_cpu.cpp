// Mesh rendering ops on the CPU: rasterize, interpolate, texture, antialias (forward and backward).
// Rasterization bins triangles to 16×16 tiles (in chunks of a fixed count, so lists are in triangle
// order whatever the thread count), then threads take tiles and the compiler vectorises the coverage
// test over a tile row. Backward passes never race: a gradient that several pixels share (a vertex, a
// texel) is summed by the one thread that owns its index range, in pixel order, so results do not
// depend on the thread count.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

#include "mesh_checks.h"
#include "mesh_math.h"
#include "splat_torch.h"  // poisoned allocation for tests, shape checks

using splat::alloc;
using splat::check_image_size;

constexpr auto CPU = c10::DeviceType::CPU;

namespace {

constexpr int TS = 16;       // tile side in pixels
constexpr int64_t CHUNKS = 64;  // binning chunks: fixed, so the bins' order is too

// Vertex-owner chunks: thread i sums the gradients of vertices [b, e) in pixel order.
template <typename F>
void by_owner(int64_t n, F&& fn) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
  at::parallel_for(0, parts, 1, [&](int64_t pb, int64_t pe) {
    for (int64_t p = pb; p < pe; ++p) fn(n * p / parts, n * (p + 1) / parts);
  });
}

template <typename S>
struct Setup {
  std::vector<mesh::Tri<S>> tris;
  std::vector<int32_t> box;  // x0, y0, x1, y1 per triangle (x0 > x1: nothing to draw)
};

template <typename S>
void setup_all(const S* pos, const int32_t* tri, int64_t F, int64_t W, int64_t H, Setup<S>& st) {
  st.tris.resize(F);
  st.box.resize(4 * F);
  at::parallel_for(0, F, 2048, [&](int64_t b, int64_t e) {
    for (int64_t f = b; f < e; ++f)
      mesh::setup_and_bound(pos + 4 * int64_t(tri[3 * f]), pos + 4 * int64_t(tri[3 * f + 1]),
                            pos + 4 * int64_t(tri[3 * f + 2]), W, H, st.tris[f], st.box.data() + 4 * f);
  });
}

// Tile lists in triangle order: counts per (chunk, tile), a scan, then the fill.
void bin_tiles(const std::vector<int32_t>& box, int64_t F, int64_t tiles_x, int64_t tiles_y,
               std::vector<int64_t>& start, std::vector<int32_t>& list) {
  const int64_t T = tiles_x * tiles_y, C = std::max<int64_t>(1, std::min(CHUNKS, F));
  std::vector<int64_t> cnt(C * T, 0);
  auto each = [&](int64_t c, auto&& visit) {
    for (int64_t f = F * c / C; f < F * (c + 1) / C; ++f) {
      const int32_t* b = box.data() + 4 * f;
      if (b[0] > b[2]) continue;
      for (int64_t ty = b[1] / TS; ty <= b[3] / TS; ++ty)
        for (int64_t tx = b[0] / TS; tx <= b[2] / TS; ++tx) visit(ty * tiles_x + tx, f);
    }
  };
  at::parallel_for(0, C, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) each(c, [&](int64_t t, int64_t) { ++cnt[c * T + t]; });
  });
  start.assign(T + 1, 0);
  std::vector<int64_t> at_(C * T);
  int64_t run = 0;
  for (int64_t t = 0; t < T; ++t) {
    start[t] = run;
    for (int64_t c = 0; c < C; ++c) {
      at_[c * T + t] = run;
      run += cnt[c * T + t];
    }
  }
  start[T] = run;
  list.resize(run);
  at::parallel_for(0, C, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) each(c, [&](int64_t t, int64_t f) { list[at_[c * T + t]++] = int32_t(f); });
  });
}

template <typename S>
void raster_tile(const Setup<S>& st, const int32_t* list, int64_t n, int64_t tx, int64_t ty, int64_t W, int64_t H,
                 S* rast, S* db) {
  const int64_t X0 = tx * TS, Y0 = ty * TS, X1 = std::min<int64_t>(X0 + TS, W), Y1 = std::min<int64_t>(Y0 + TS, H);
  S depth[TS * TS];
  int32_t best[TS * TS];
  S px[TS];
  for (int i = 0; i < TS * TS; ++i) {
    depth[i] = std::numeric_limits<S>::infinity();
    best[i] = -1;
  }
  for (int64_t X = X0; X < X1; ++X) px[X - X0] = S(mesh::ndc(X, W));
  for (int64_t k = 0; k < n; ++k) {
    const int32_t f = list[k];
    const int32_t* b = st.box.data() + 4 * int64_t(f);
    const mesh::Tri<S>& t = st.tris[f];
    const int64_t xa = std::max<int64_t>(b[0], X0), xb = std::min<int64_t>(b[2] + 1, X1);
    const int64_t ya = std::max<int64_t>(b[1], Y0), yb = std::min<int64_t>(b[3] + 1, Y1);
    if (xa >= xb || ya >= yb) continue;
    const S sg = t.det > S(0) ? S(1) : S(-1);
    S a[3], bb[3], c[3];
    bool tie[3];
    int64_t ia[3], ib[3], ic[3];  // exact: e = ia·X + ib·Y + ic in 1/256-pixel units, times the orientation
    for (int i = 0; i < 3; ++i) {
      a[i] = t.A[i][0]; bb[i] = t.A[i][1]; c[i] = t.A[i][2];
      if (t.exact) {
        ia[i] = -t.ey[i] * t.sign;
        ib[i] = t.ex[i] * t.sign;
        ic[i] = (t.ex[i] * (mesh::SUBPIXEL / 2 - t.oy[i]) - t.ey[i] * (mesh::SUBPIXEL / 2 - t.ox[i])) * t.sign;
        tie[i] = ia[i] > 0 || (ia[i] == 0 && ib[i] > 0);
      } else {
        const S na = a[i] * sg, nb = bb[i] * sg;
        tie[i] = na > S(0) || (na == S(0) && nb > S(0));
      }
    }
    for (int64_t Y = ya; Y < yb; ++Y) {
      const S py = S(mesh::ndc(Y, H));
      const S r0 = bb[0] * py, r1 = bb[1] * py, r2 = bb[2] * py;
      S* dp = depth + (Y - Y0) * TS;
      int32_t* bp = best + (Y - Y0) * TS;
      if (t.exact && xb - xa <= 8) {
        // a small triangle: test the integers first, the depth only where it covers
        const int64_t q0 = ib[0] * Y * mesh::SUBPIXEL + ic[0], q1 = ib[1] * Y * mesh::SUBPIXEL + ic[1],
                      q2 = ib[2] * Y * mesh::SUBPIXEL + ic[2];
        for (int64_t X = xa; X < xb; ++X) {
          const int64_t XS = X * mesh::SUBPIXEL;
          const int64_t s0 = ia[0] * XS + q0, s1 = ia[1] * XS + q1, s2 = ia[2] * XS + q2;
          if (!((s0 > 0 || (s0 == 0 && tie[0])) && (s1 > 0 || (s1 == 0 && tie[1])) && (s2 > 0 || (s2 == 0 && tie[2]))))
            continue;
          const S x = px[X - X0];
          const S e0 = (a[0] * x + r0) + c[0], e1 = (a[1] * x + r1) + c[1], e2 = (a[2] * x + r2) + c[2];
          const S ze = (e0 * t.z[0] + e1 * t.z[1]) + e2 * t.z[2];
          const S we = (e0 * t.w[0] + e1 * t.w[1]) + e2 * t.w[2];
          const S d = ze / we;
          if (we != S(0) && d >= S(-1) && d <= S(1) && d < dp[X - X0]) {
            dp[X - X0] = d;
            bp[X - X0] = f;
          }
        }
        continue;
      }
      if (t.exact) {
        // the same integers as mesh::inside_exact (e is linear in X, Y: no rounding anywhere)
        const int64_t q0 = ib[0] * Y * mesh::SUBPIXEL + ic[0], q1 = ib[1] * Y * mesh::SUBPIXEL + ic[1],
                      q2 = ib[2] * Y * mesh::SUBPIXEL + ic[2];
#pragma omp simd
        for (int64_t X = xa; X < xb; ++X) {
          const S x = px[X - X0];
          const int64_t XS = X * mesh::SUBPIXEL;
          const int64_t s0 = ia[0] * XS + q0, s1 = ia[1] * XS + q1, s2 = ia[2] * XS + q2;
          const bool in = (s0 > 0 || (s0 == 0 && tie[0])) && (s1 > 0 || (s1 == 0 && tie[1])) && (s2 > 0 || (s2 == 0 && tie[2]));
          const S e0 = (a[0] * x + r0) + c[0], e1 = (a[1] * x + r1) + c[1], e2 = (a[2] * x + r2) + c[2];
          const S ze = (e0 * t.z[0] + e1 * t.z[1]) + e2 * t.z[2];
          const S we = (e0 * t.w[0] + e1 * t.w[1]) + e2 * t.w[2];
          const S d = ze / we;
          const bool take = in && we != S(0) && d >= S(-1) && d <= S(1) && d < dp[X - X0];
          dp[X - X0] = take ? d : dp[X - X0];
          bp[X - X0] = take ? f : bp[X - X0];
        }
        continue;
      }
#pragma omp simd
      for (int64_t X = xa; X < xb; ++X) {
        // the same operations, in the same order, as mesh::cover
        const S x = px[X - X0];
        const S e0 = (a[0] * x + r0) + c[0], e1 = (a[1] * x + r1) + c[1], e2 = (a[2] * x + r2) + c[2];
        const S s0 = e0 * sg, s1 = e1 * sg, s2 = e2 * sg;
        const bool in = (s0 > S(0) || (s0 == S(0) && tie[0])) && (s1 > S(0) || (s1 == S(0) && tie[1])) &&
                        (s2 > S(0) || (s2 == S(0) && tie[2]));
        const S ze = (e0 * t.z[0] + e1 * t.z[1]) + e2 * t.z[2];
        const S we = (e0 * t.w[0] + e1 * t.w[1]) + e2 * t.w[2];
        const S d = ze / we;
        const bool take = in && we != S(0) && d >= S(-1) && d <= S(1) && d < dp[X - X0];
        dp[X - X0] = take ? d : dp[X - X0];
        bp[X - X0] = take ? f : bp[X - X0];
      }
    }
  }
  const S sx = S(2) / S(W), sy = S(2) / S(H);
  for (int64_t Y = Y0; Y < Y1; ++Y) {
    const S py = S(mesh::ndc(Y, H));
    for (int64_t X = X0; X < X1; ++X) {
      const int64_t i = (Y - Y0) * TS + (X - X0);
      S* r = rast + 4 * (Y * W + X);
      S* d = db + 4 * (Y * W + X);
      if (best[i] < 0) {
        r[0] = r[1] = r[2] = r[3] = S(0);
        d[0] = d[1] = d[2] = d[3] = S(0);
        continue;
      }
      const mesh::Tri<S>& t = st.tris[best[i]];
      S e[3];
      for (int j = 0; j < 3; ++j) e[j] = mesh::edge_value(t.A[j], px[X - X0], py);
      mesh::barycentrics(t, e, r[0], r[1]);
      r[2] = depth[i];
      r[3] = S(best[i] + 1);
      mesh::barycentric_derivatives(t, e, sx, sy, d);
    }
  }
}

}  // namespace

std::vector<at::Tensor> rasterize_fwd(const at::Tensor& pos, const at::Tensor& tri, int64_t height, int64_t width) {
  mesh_checks::pos_tri(pos, tri, CPU);
  check_image_size(width, height);
  TORCH_CHECK(tri.size(0) < (int64_t(1) << 24), "at most 2^24 - 1 triangles (ids are stored exactly in float32)");
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0), H = height, W = width;
  at::Tensor rast = alloc({B, H, W, 4}, pos.options()), db = alloc({B, H, W, 4}, pos.options());
  const int64_t tiles_x = (W + TS - 1) / TS, tiles_y = (H + TS - 1) / TS;
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_fwd", [&] {
    Setup<scalar_t> st;
    std::vector<int64_t> start;
    std::vector<int32_t> list;
    for (int64_t b = 0; b < B; ++b) {
      setup_all(pos.data_ptr<scalar_t>() + b * V * 4, tri.data_ptr<int32_t>(), F, W, H, st);
      bin_tiles(st.box, F, tiles_x, tiles_y, start, list);
      scalar_t* rp = rast.data_ptr<scalar_t>() + b * H * W * 4;
      scalar_t* dp = db.data_ptr<scalar_t>() + b * H * W * 4;
      at::parallel_for(0, tiles_x * tiles_y, 1, [&](int64_t tb, int64_t te) {
        for (int64_t t = tb; t < te; ++t)
          raster_tile(st, list.data() + start[t], start[t + 1] - start[t], t % tiles_x, t / tiles_x, W, H, rp, dp);
      });
    }
  });
  return {rast, db};
}

at::Tensor rasterize_bwd(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast, const at::Tensor& g_rast) {
  mesh_checks::pos_tri(pos, tri, CPU);
  mesh_checks::rast(rast, "rast", tri.size(0), CPU);
  mesh_checks::on_device(g_rast, "g_rast", CPU);
  TORCH_CHECK(g_rast.sizes() == rast.sizes() && rast.size(0) == pos.size(0), "rast and its gradient must match pos' batch");
  const int64_t B = pos.size(0), V = pos.size(1), H = rast.size(1), W = rast.size(2), N = H * W;
  at::Tensor g_pos = at::zeros_like(pos);
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_bwd", [&] {
    using S = scalar_t;
    std::vector<S> part(N * 9);
    for (int64_t b = 0; b < B; ++b) {
      const S* pp = pos.data_ptr<S>() + b * V * 4;
      const S* rp = rast.data_ptr<S>() + b * N * 4;
      const S* gp = g_rast.data_ptr<S>() + b * N * 4;
      const int32_t* tp = tri.data_ptr<int32_t>();
      at::parallel_for(0, N, 1024, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t f = int64_t(rp[4 * i + 3]) - 1;
          S(*g)[3] = reinterpret_cast<S(*)[3]>(part.data() + 9 * i);
          if (f < 0 || (gp[4 * i] == S(0) && gp[4 * i + 1] == S(0))) {
            for (int k = 0; k < 9; ++k) part[9 * i + k] = S(0);
            continue;
          }
          mesh::Tri<S> t;
          mesh::setup_triangle(pp + 4 * tp[3 * f], pp + 4 * tp[3 * f + 1], pp + 4 * tp[3 * f + 2], t);
          mesh::barycentrics_backward(t, S(mesh::ndc(i % W, W)), S(mesh::ndc(i / W, H)), gp[4 * i], gp[4 * i + 1], g);
        }
      });
      S* out = g_pos.data_ptr<S>() + b * V * 4;
      by_owner(V, [&](int64_t v0, int64_t v1) {
        for (int64_t i = 0; i < N; ++i) {
          const int64_t f = int64_t(rp[4 * i + 3]) - 1;
          if (f < 0) continue;
          for (int c = 0; c < 3; ++c) {
            const int64_t v = tp[3 * f + c];
            if (v < v0 || v >= v1) continue;
            const S* g = part.data() + 9 * i + 3 * c;
            out[4 * v] += g[0]; out[4 * v + 1] += g[1]; out[4 * v + 3] += g[2];
          }
        }
      });
    }
  });
  return g_pos;
}

std::vector<at::Tensor> interpolate_fwd(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri,
                                        const at::Tensor& rast_db, bool want_da) {
  mesh_checks::interpolate(attr, rast, tri, CPU);
  if (want_da) {
    mesh_checks::on_device(rast_db, "rast_db", CPU);
    TORCH_CHECK(rast_db.sizes() == rast.sizes(), "rast_db must match rast");
  }
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), N = H * W, V = attr.size(1), C = attr.size(2);
  at::Tensor out = alloc({B, H, W, C}, attr.options());
  at::Tensor da = want_da ? alloc({B, H, W, 2 * C}, attr.options()) : at::empty({0}, attr.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_fwd", [&] {
    using S = scalar_t;
    // raw pointers out of the loops: a tensor accessor per pixel costs more than the pixel
    const int32_t* tp = tri.data_ptr<int32_t>();
    const S* ap = attr.data_ptr<S>();
    const S* rp = rast.data_ptr<S>();
    const S* dbp = want_da ? rast_db.data_ptr<S>() : nullptr;
    S* op = out.data_ptr<S>();
    S* dap = want_da ? da.data_ptr<S>() : nullptr;
    const bool shared = attr.size(0) == 1;
    at::parallel_for(0, B * N, 1024, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const S* a = ap + (shared ? 0 : (i / N) * V * C);
        mesh::interpolate_pixel(rp + 4 * i, a, tp, C, dbp ? dbp + 4 * i : nullptr, op + i * C,
                                dap ? dap + i * 2 * C : nullptr);
      }
    });
  });
  return {out, da};
}

std::vector<at::Tensor> interpolate_bwd(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri,
                                        const at::Tensor& g_out) {
  mesh_checks::interpolate(attr, rast, tri, CPU);
  mesh_checks::on_device(g_out, "g_out", CPU);
  TORCH_CHECK(g_out.scalar_type() == attr.scalar_type(), "g_out must have attr's dtype");
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), N = H * W, V = attr.size(1), C = attr.size(2);
  TORCH_CHECK(g_out.dim() == 4 && g_out.size(0) == B && g_out.size(1) == H && g_out.size(2) == W && g_out.size(3) == C,
              "g_out must be (B, H, W, C)");
  at::Tensor g_attr = at::zeros_like(attr), g_rast = alloc({B, H, W, 4}, rast.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_bwd", [&] {
    using S = scalar_t;
    const int32_t* tp = tri.data_ptr<int32_t>();
    const S* rp = rast.data_ptr<S>();
    const S* gp = g_out.data_ptr<S>();
    const S* ap = attr.data_ptr<S>();
    S* grp = g_rast.data_ptr<S>();
    S* gap = g_attr.data_ptr<S>();
    const bool shared_attr = attr.size(0) == 1;
    at::parallel_for(0, B * N, 1024, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        S* gr = grp + 4 * i;
        const S* a = ap + (shared_attr ? 0 : (i / N) * V * C);
        mesh::interpolate_pixel_backward(rp + 4 * i, a, tp, C, gp + i * C, gr[0], gr[1]);
        gr[2] = gr[3] = S(0);
      }
    });
    const bool shared = attr.size(0) == 1;
    by_owner(V, [&](int64_t v0, int64_t v1) {
      for (int64_t i = 0; i < B * N; ++i) {
        const int64_t f = int64_t(rp[4 * i + 3]) - 1;
        if (f < 0) continue;
        const S u = rp[4 * i], v = rp[4 * i + 1];
        const S w[3] = {u, v, S(1) - u - v};
        S* ga = gap + (shared ? 0 : (i / N) * V * C);
        for (int k = 0; k < 3; ++k) {
          const int64_t vi = tp[3 * f + k];
          if (vi < v0 || vi >= v1) continue;
          for (int64_t c = 0; c < C; ++c) ga[vi * C + c] += w[k] * gp[i * C + c];
        }
      }
    });
  });
  return {g_attr, g_rast};
}

namespace {

std::vector<mesh::MipLevel> mip_levels(const at::Tensor& levels, const at::Tensor& mips) {
  auto l = levels.to(at::kLong).contiguous();
  TORCH_CHECK(l.dim() == 2 && l.size(1) == 3 && l.size(0) >= 1, "levels must be (L, 3): width, height, offset");
  std::vector<mesh::MipLevel> out(l.size(0));
  for (int64_t i = 0; i < l.size(0); ++i) {
    const int64_t* p = l.data_ptr<int64_t>() + 3 * i;
    out[i] = {p[0], p[1], p[2]};
    TORCH_CHECK(p[0] >= 1 && p[1] >= 1 && p[2] >= 0 && p[2] + p[0] * p[1] <= mips.size(1), "mip level ", i,
                " lies outside the texture buffer");
  }
  return out;
}

}  // namespace

at::Tensor texture_fwd(const at::Tensor& mips, const at::Tensor& levels, const at::Tensor& uv, const at::Tensor& uv_da,
                       int64_t filter, int64_t boundary) {
  mesh_checks::texture(mips, uv, uv_da, filter, boundary, CPU);
  const auto lv = mip_levels(levels, mips);
  const int64_t B = uv.size(0), N = uv.size(1) * uv.size(2), C = mips.size(2), T = mips.size(1);
  at::Tensor out = alloc({B, uv.size(1), uv.size(2), C}, mips.options());
  AT_DISPATCH_FLOATING_TYPES(mips.scalar_type(), "texture_fwd", [&] {
    using S = scalar_t;
    const S* mp = mips.data_ptr<S>();
    const S* uvp = uv.data_ptr<S>();
    const S* dap = filter == 2 ? uv_da.data_ptr<S>() : nullptr;
    S* op = out.data_ptr<S>();
    const bool shared = mips.size(0) == 1;
    const int L = int(lv.size());
    at::parallel_for(0, B * N, 1024, [&](int64_t i0, int64_t i1) {
      int64_t idx[8];
      S w[8], du[8], dv[8];
      for (int64_t i = i0; i < i1; ++i) {
        const S* tex = mp + (shared ? 0 : (i / N) * T * C);
        const int n = mesh::pixel_taps(lv.data(), L, uvp + 2 * i, dap ? dap + 4 * i : nullptr, int(filter),
                                       int(boundary), idx, w, du, dv);
        S* o = op + i * C;
        for (int64_t c = 0; c < C; ++c) o[c] = S(0);
        for (int k = 0; k < n; ++k)
          for (int64_t c = 0; c < C; ++c) o[c] += w[k] * tex[idx[k] * C + c];
      }
    });
  });
  return out;
}

std::vector<at::Tensor> texture_bwd(const at::Tensor& mips, const at::Tensor& levels, const at::Tensor& uv,
                                    const at::Tensor& uv_da, int64_t filter, int64_t boundary, const at::Tensor& g_out) {
  mesh_checks::texture(mips, uv, uv_da, filter, boundary, CPU);
  mesh_checks::on_device(g_out, "g_out", CPU);
  const auto lv = mip_levels(levels, mips);
  const int64_t B = uv.size(0), N = uv.size(1) * uv.size(2), C = mips.size(2), T = mips.size(1);
  TORCH_CHECK(g_out.dim() == 4 && g_out.size(0) == B && g_out.size(1) * g_out.size(2) == N && g_out.size(3) == C,
              "g_out must be (B, H, W, C)");
  at::Tensor g_mips = alloc(mips.sizes(), mips.options()), g_uv = alloc(uv.sizes(), uv.options());
  TORCH_CHECK(T < (int64_t(1) << 32), "at most 2^32 texels in a pyramid");
  AT_DISPATCH_FLOATING_TYPES(mips.scalar_type(), "texture_bwd", [&] {
    using S = scalar_t;
    const S* gp = g_out.data_ptr<S>();
    // pass 1, by pixel: the uv gradient, and each tap's texel and weight (kept for pass 2)
    std::unique_ptr<uint32_t[]> tap_idx(new uint32_t[B * N * 8]);  // uninitialised: pass 1 writes what pass 2 reads
    std::unique_ptr<S[]> tap_w(new S[B * N * 8]);
    std::unique_ptr<uint8_t[]> taps(new uint8_t[B * N]);
    const S* mp = mips.data_ptr<S>();
    const S* uvp = uv.data_ptr<S>();
    const S* dap = filter == 2 ? uv_da.data_ptr<S>() : nullptr;
    S* guv = g_uv.data_ptr<S>();
    S* gm = g_mips.data_ptr<S>();
    const bool shared = mips.size(0) == 1;
    const int L = int(lv.size());
    at::parallel_for(0, B * N, 1024, [&](int64_t i0, int64_t i1) {
      int64_t idx[8];
      S w[8], du[8], dv[8];
      for (int64_t i = i0; i < i1; ++i) {
        const S* tex = mp + (shared ? 0 : (i / N) * T * C);
        const int n = mesh::pixel_taps(lv.data(), L, uvp + 2 * i, dap ? dap + 4 * i : nullptr, int(filter),
                                       int(boundary), idx, w, du, dv);
        bool any = false;
        for (int64_t c = 0; c < C; ++c) any = any || gp[i * C + c] != S(0);
        S gu = S(0), gv = S(0);
        int kept = 0;
        for (int k = 0; any && k < n; ++k) {
          S dot = S(0);
          for (int64_t c = 0; c < C; ++c) dot += gp[i * C + c] * tex[idx[k] * C + c];
          gu += du[k] * dot;
          gv += dv[k] * dot;
          if (w[k] != S(0)) {
            tap_idx[8 * i + kept] = uint32_t(idx[k]);
            tap_w[8 * i + kept++] = w[k];
          }
        }
        taps[i] = uint8_t(kept);
        guv[2 * i] = gu;
        guv[2 * i + 1] = gv;
      }
    });
    // pass 2, by texel owner: zero its range, then add the taps that land in it, in pixel order
    const int64_t Bt = mips.size(0);
    by_owner(T, [&](int64_t t0, int64_t t1) {
      for (int64_t b = 0; b < Bt; ++b) std::fill(gm + (b * T + t0) * C, gm + (b * T + t1) * C, S(0));
      for (int64_t i = 0; i < B * N; ++i) {
        S* g = gm + (shared ? 0 : (i / N) * T * C);
        for (int k = 0; k < taps[i]; ++k) {
          const int64_t t = tap_idx[8 * i + k];
          if (t < t0 || t >= t1) continue;
          for (int64_t c = 0; c < C; ++c) g[t * C + c] += tap_w[8 * i + k] * gp[i * C + c];
        }
      }
    });
  });
  return {g_mips, g_uv};
}

namespace {

template <typename S>
void silhouettes(const S* pos, const int32_t* tri, const int32_t* nbr, int64_t B, int64_t V, int64_t F, int64_t W,
                 int64_t H, uint8_t* sil) {
  at::parallel_for(0, B * F, 4096, [&](int64_t b0, int64_t b1) {
    for (int64_t g = b0; g < b1; ++g) sil[g] = mesh::face_silhouettes(pos + (g / F) * V * 4, tri, nbr, g % F, W, H);
  });
}

}  // namespace

at::Tensor antialias_fwd(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos, const at::Tensor& tri,
                         const at::Tensor& nbr) {
  mesh_checks::antialias(color, rast, pos, tri, nbr, CPU);
  const int64_t B = color.size(0), H = color.size(1), W = color.size(2), N = H * W, C = color.size(3), V = pos.size(1);
  at::Tensor out = alloc(color.sizes(), color.options());
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_fwd", [&] {
    using S = scalar_t;
    const int64_t F = tri.size(0);
    std::vector<uint8_t> sil(B * F);
    silhouettes(pos.data_ptr<S>(), tri.data_ptr<int32_t>(), nbr.data_ptr<int32_t>(), B, V, F, W, H, sil.data());
    const S* cp = color.data_ptr<S>();
    const S* rpp = rast.data_ptr<S>();
    const S* ppp = pos.data_ptr<S>();
    const int32_t* tp = tri.data_ptr<int32_t>();
    S* op = out.data_ptr<S>();
    at::parallel_for(0, B * N, 512, [&](int64_t i0, int64_t i1) {
      for (int64_t g = i0; g < i1; ++g) {
        const int64_t b = g / N, i = g % N;
        mesh::antialias_pixel(cp + b * N * C, rpp + b * N * 4, ppp + b * V * 4, tp, sil.data() + b * F, W, H, C, i,
                              op + g * C);
      }
    });
  });
  return out;
}

std::vector<at::Tensor> antialias_bwd(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos,
                                      const at::Tensor& tri, const at::Tensor& nbr, const at::Tensor& g_out) {
  mesh_checks::antialias(color, rast, pos, tri, nbr, CPU);
  mesh_checks::on_device(g_out, "g_out", CPU);
  TORCH_CHECK(g_out.sizes() == color.sizes(), "g_out must match color");
  const int64_t B = color.size(0), H = color.size(1), W = color.size(2), N = H * W, C = color.size(3), V = pos.size(1);
  at::Tensor g_color = alloc(color.sizes(), color.options()), g_pos = at::zeros_like(pos);
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_bwd", [&] {
    using S = scalar_t;
    const int32_t* tp = tri.data_ptr<int32_t>();
    const int32_t* np = nbr.data_ptr<int32_t>();
    // per pixel and direction: the two edge vertices and their (x, y, w) gradients
    std::vector<int32_t> vid(N * 4);
    std::vector<S> part(N * 12);
    const int64_t F = tri.size(0);
    std::vector<uint8_t> sil(B * F);
    silhouettes(pos.data_ptr<S>(), tp, np, B, V, F, W, H, sil.data());
    for (int64_t b = 0; b < B; ++b) {
      const S* col = color.data_ptr<S>() + b * N * C;
      const S* go = g_out.data_ptr<S>() + b * N * C;
      const S* rp = rast.data_ptr<S>() + b * N * 4;
      const S* pp = pos.data_ptr<S>() + b * V * 4;
      S* gc = g_color.data_ptr<S>() + b * N * C;
      at::parallel_for(0, N, 512, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          mesh::antialias_pixel_backward(col, go, rp, pp, tp, sil.data() + b * F, W, H, C, i, gc + i * C, vid.data() + 4 * i,
                                         part.data() + 12 * i);
        }
      });
      S* out = g_pos.data_ptr<S>() + b * V * 4;
      by_owner(V, [&](int64_t v0, int64_t v1) {
        for (int64_t i = 0; i < N; ++i)
          for (int k = 0; k < 4; ++k) {
            const int64_t v = vid[4 * i + k];
            if (v < v0 || v >= v1) continue;
            const S* g = part.data() + 12 * i + 3 * k;
            out[4 * v] += g[0]; out[4 * v + 1] += g[1]; out[4 * v + 3] += g[2];
          }
      });
    }
  });
  return {g_color, g_pos};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { MESH_DEFINE_MODULE(m); }
