// NeRF ops on the CPU: hash encoding and compositing of packed samples (forward and backward).
// Threads from torch's OpenMP pool; every output element is written by exactly one thread, so
// results do not depend on the thread count (the table gradient is split by level, not by point).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include "nerf_math.h"
#include "splat_torch.h"  // poisoned allocation for tests

using splat::alloc;

namespace {

// The levels of a table (L, T, F), checked so that no corner index can leave the table.
std::vector<nerf::Level> levels(const at::Tensor& scales, const at::Tensor& res, const at::Tensor& dense,
                                const at::Tensor& table) {
  TORCH_CHECK(table.dim() == 3 && table.device().is_cpu() && table.is_contiguous(),
              "table must be a contiguous CPU tensor (L, T, F)");
  auto s = scales.to(at::kDouble).contiguous(), r = res.to(at::kLong).contiguous(), d = dense.to(at::kBool).contiguous();
  TORCH_CHECK(s.numel() == table.size(0) && r.numel() == table.size(0) && d.numel() == table.size(0),
              "one scale, resolution and dense flag per level");
  const int64_t T = table.size(1);
  TORCH_CHECK(T >= 1 && table.size(2) >= 1, "table must have entries and features");
  std::vector<nerf::Level> out(s.numel());
  for (int64_t l = 0; l < s.numel(); ++l) {
    out[l] = {s.data_ptr<double>()[l], r.data_ptr<int64_t>()[l], d.data_ptr<bool>()[l]};
    TORCH_CHECK(std::isfinite(out[l].scale) && out[l].scale > 0 && out[l].res >= 2 &&
                    out[l].res >= int64_t(std::ceil(out[l].scale)) + 1 && out[l].res <= (1 << 20),
                "level ", l, ": scale and resolution do not match");
    TORCH_CHECK(!out[l].dense || out[l].res * out[l].res * out[l].res <= T, "level ", l,
                ": a dense level needs res³ <= table size");
  }
  return out;
}

void check_points(const at::Tensor& x, const at::Tensor& table) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "x must be (N, 3)");
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), "x must be a contiguous CPU tensor");
  TORCH_CHECK(x.scalar_type() == table.scalar_type(), "x and table must share a dtype");
}

}  // namespace

at::Tensor hash_encode_fwd(const at::Tensor& x, const at::Tensor& table, const at::Tensor& scales, const at::Tensor& res,
                           const at::Tensor& dense) {
  const auto lv = levels(scales, res, dense, table);
  check_points(x, table);
  const int64_t N = x.size(0), L = table.size(0), T = table.size(1), F = table.size(2);
  at::Tensor out = alloc({N, L * F}, table.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hash_encode_fwd", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* tp = table.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, N, 256, [&](int64_t b, int64_t e) {
      int64_t idx[8];
      scalar_t w[8];
      for (int64_t n = b; n < e; ++n) {
        for (int64_t l = 0; l < L; ++l) {
          nerf::cell_corners<scalar_t>(xp + 3 * n, lv[l], T, idx, w, nullptr);
          scalar_t* o = op + n * L * F + l * F;
          for (int64_t f = 0; f < F; ++f) o[f] = scalar_t(0);
          for (int k = 0; k < 8; ++k) {
            const scalar_t* row = tp + (l * T + idx[k]) * F;
            for (int64_t f = 0; f < F; ++f) o[f] += w[k] * row[f];
          }
        }
      }
    });
  });
  return out;
}

std::vector<at::Tensor> hash_encode_bwd(const at::Tensor& x, const at::Tensor& table, const at::Tensor& scales,
                                        const at::Tensor& res, const at::Tensor& dense, const at::Tensor& grad_out,
                                        bool need_x_grad) {
  const auto lv = levels(scales, res, dense, table);
  check_points(x, table);
  const int64_t N = x.size(0), L = table.size(0), T = table.size(1), F = table.size(2);
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == N && grad_out.size(1) == L * F && grad_out.is_contiguous() &&
                  grad_out.scalar_type() == table.scalar_type(), "grad_out must be a contiguous (N, L·F) tensor");
  at::Tensor g_table = at::zeros_like(table);
  at::Tensor g_x = need_x_grad ? alloc({N, 3}, x.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hash_encode_bwd", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = grad_out.data_ptr<scalar_t>();
    scalar_t* gt = g_table.data_ptr<scalar_t>();
    at::parallel_for(0, L, 1, [&](int64_t lb, int64_t le) {  // one level's table belongs to one thread
      int64_t idx[8];
      scalar_t w[8];
      for (int64_t l = lb; l < le; ++l) {
        for (int64_t n = 0; n < N; ++n) {
          nerf::cell_corners<scalar_t>(xp + 3 * n, lv[l], T, idx, w, nullptr);
          const scalar_t* g = gp + n * L * F + l * F;
          for (int k = 0; k < 8; ++k) {
            scalar_t* row = gt + (l * T + idx[k]) * F;
            for (int64_t f = 0; f < F; ++f) row[f] += w[k] * g[f];
          }
        }
      }
    });
    if (need_x_grad) {
      const scalar_t* tp = table.data_ptr<scalar_t>();
      scalar_t* gx = g_x.data_ptr<scalar_t>();
      at::parallel_for(0, N, 256, [&](int64_t b, int64_t e) {
        int64_t idx[8];
        scalar_t w[8], dw[8][3];
        for (int64_t n = b; n < e; ++n) {
          scalar_t acc[3] = {0, 0, 0};
          for (int64_t l = 0; l < L; ++l) {
            nerf::cell_corners<scalar_t>(xp + 3 * n, lv[l], T, idx, w, dw);
            const scalar_t* g = gp + n * L * F + l * F;
            for (int k = 0; k < 8; ++k) {
              const scalar_t* row = tp + (l * T + idx[k]) * F;
              scalar_t dot = 0;
              for (int64_t f = 0; f < F; ++f) dot += row[f] * g[f];
              for (int d = 0; d < 3; ++d) acc[d] += dw[k][d] * dot;
            }
          }
          for (int d = 0; d < 3; ++d) gx[3 * n + d] = acc[d];
        }
      });
    }
  });
  return {g_table, g_x};
}

// Packed samples: sigmas (M,), rgbs (M, 3), t0 and t1 (M,) of one dtype; offsets (R + 1) from 0 to M.
void check_samples(const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t0, const at::Tensor& t1,
                   const at::Tensor& offsets) {
  const int64_t M = sigmas.numel();
  TORCH_CHECK(sigmas.dim() == 1 && rgbs.dim() == 2 && rgbs.size(0) == M && rgbs.size(1) == 3 && t0.dim() == 1 &&
                  t0.numel() == M && t1.dim() == 1 && t1.numel() == M, "samples must be sigmas (M), rgbs (M, 3), t (M)");
  for (const at::Tensor* t : {&sigmas, &rgbs, &t0, &t1}) {
    TORCH_CHECK(t->scalar_type() == sigmas.scalar_type(), "samples must share one dtype");
    TORCH_CHECK(t->device().is_cpu() && t->is_contiguous(), "samples must be contiguous CPU tensors");
  }
  TORCH_CHECK(offsets.dim() == 1 && offsets.numel() >= 1, "offsets must be (R + 1)");
  auto off = offsets.to(at::kLong).contiguous();
  const int64_t* op = off.data_ptr<int64_t>();
  const int64_t R = offsets.numel() - 1;
  TORCH_CHECK(op[0] == 0 && op[R] == M, "offsets must run from 0 to the number of samples");
  for (int64_t r = 0; r < R; ++r) TORCH_CHECK(op[r] <= op[r + 1], "offsets must not decrease");
}

std::vector<at::Tensor> composite_fwd(const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t0,
                                      const at::Tensor& t1, const at::Tensor& offsets, double t_min) {
  check_samples(sigmas, rgbs, t0, t1, offsets);
  const int64_t R = offsets.numel() - 1;
  at::Tensor rgb = alloc({R, 3}, sigmas.options()), opacity = alloc({R}, sigmas.options()),
             depth = alloc({R}, sigmas.options());
  auto off = offsets.to(at::kLong).contiguous();
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "composite_fwd", [&] {
    const int64_t* op = off.data_ptr<int64_t>();
    at::parallel_for(0, R, 64, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        nerf::composite_ray<scalar_t>(sigmas.data_ptr<scalar_t>(), rgbs.data_ptr<scalar_t>(), t0.data_ptr<scalar_t>(),
                                      t1.data_ptr<scalar_t>(), op[r], op[r + 1], scalar_t(t_min),
                                      rgb.data_ptr<scalar_t>() + 3 * r, opacity.data_ptr<scalar_t>() + r,
                                      depth.data_ptr<scalar_t>() + r);
    });
  });
  return {rgb, opacity, depth};
}

std::vector<at::Tensor> composite_bwd(const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t0,
                                      const at::Tensor& t1, const at::Tensor& offsets, double t_min,
                                      const at::Tensor& rgb, const at::Tensor& opacity, const at::Tensor& depth,
                                      const at::Tensor& g_rgb, const at::Tensor& g_opacity, const at::Tensor& g_depth) {
  check_samples(sigmas, rgbs, t0, t1, offsets);
  const int64_t R = offsets.numel() - 1, M = sigmas.numel();
  for (const at::Tensor* t : {&rgb, &opacity, &depth, &g_rgb, &g_opacity, &g_depth}) {
    TORCH_CHECK(t->scalar_type() == sigmas.scalar_type() && t->is_contiguous() && t->device().is_cpu(),
                "ray outputs and their gradients must be contiguous CPU tensors of the samples' dtype");
    TORCH_CHECK(t->size(0) == R && t->numel() == (t->dim() == 2 ? 3 * R : R), "ray outputs must have one row per ray");
  }
  at::Tensor g_sigma = alloc({M}, sigmas.options()), g_rgbs = alloc({M, 3}, sigmas.options());
  auto off = offsets.to(at::kLong).contiguous();
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "composite_bwd", [&] {
    const int64_t* op = off.data_ptr<int64_t>();
    at::parallel_for(0, R, 64, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        nerf::composite_ray_backward<scalar_t>(
            sigmas.data_ptr<scalar_t>(), rgbs.data_ptr<scalar_t>(), t0.data_ptr<scalar_t>(), t1.data_ptr<scalar_t>(),
            op[r], op[r + 1], scalar_t(t_min), g_rgb.data_ptr<scalar_t>() + 3 * r, g_opacity.data_ptr<scalar_t>()[r],
            g_depth.data_ptr<scalar_t>()[r], rgb.data_ptr<scalar_t>() + 3 * r, opacity.data_ptr<scalar_t>()[r],
            depth.data_ptr<scalar_t>()[r], g_sigma.data_ptr<scalar_t>(), g_rgbs.data_ptr<scalar_t>());
    });
  });
  return {g_sigma, g_rgbs};
}

nerf::Grid make_grid(const at::Tensor& bits, const at::Tensor& centre, const at::Tensor& half) {
  TORCH_CHECK(bits.dim() == 4 && bits.size(1) == bits.size(2) && bits.size(2) == bits.size(3) &&
                  bits.scalar_type() == at::kByte, "occupancy bits must be uint8 (cascades, G, G, G)");
  TORCH_CHECK(bits.size(0) >= 1 && bits.size(0) <= 16 && bits.size(1) >= 1, "the grid needs 1..16 cascades of G >= 1");
  TORCH_CHECK(bits.device().is_cpu() && bits.is_contiguous(), "occupancy bits must be a contiguous CPU tensor");
  TORCH_CHECK(centre.numel() == 3 && half.numel() == 3, "grid centre and half-size need 3 values each");
  auto c = centre.to(at::kCPU, at::kDouble).contiguous(), h = half.to(at::kCPU, at::kDouble).contiguous();
  nerf::Grid g;
  for (int a = 0; a < 3; ++a) { g.centre[a] = c.data_ptr<double>()[a]; g.half[a] = h.data_ptr<double>()[a]; }
  for (int a = 0; a < 3; ++a)
    TORCH_CHECK(std::isfinite(g.centre[a]) && std::isfinite(g.half[a]) && g.half[a] > 0,
                "grid centre must be finite and half-size positive");
  g.cascades = bits.size(0);
  g.res = bits.size(1);
  return g;
}

std::vector<at::Tensor> march_rays(const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& near,
                                   const at::Tensor& far, const at::Tensor& bits, const at::Tensor& centre,
                                   const at::Tensor& half, double dt_min, double dt_max, double cone) {
  TORCH_CHECK(origins.scalar_type() == at::kDouble && dirs.scalar_type() == at::kDouble &&
                  near.scalar_type() == at::kDouble && far.scalar_type() == at::kDouble, "rays must be float64");
  const nerf::Grid g = make_grid(bits, centre, half);
  const int64_t R = origins.size(0);
  TORCH_CHECK(origins.dim() == 2 && origins.size(1) == 3 && dirs.dim() == 2 && dirs.size(0) == R && dirs.size(1) == 3 &&
                  near.dim() == 1 && near.numel() == R && far.dim() == 1 && far.numel() == R,
              "rays must be origins, dirs (R, 3) and near, far (R)");
  for (const at::Tensor* t : {&origins, &dirs, &near, &far})
    TORCH_CHECK(t->device().is_cpu() && t->is_contiguous(), "rays must be contiguous CPU tensors");
  TORCH_CHECK(std::isfinite(dt_min) && dt_min > 0 && dt_max >= dt_min && std::isfinite(cone) && cone >= 0,
              "need 0 < dt_min <= dt_max and cone >= 0");
  TORCH_CHECK(at::isfinite(origins).all().item<bool>() && at::isfinite(dirs).all().item<bool>() &&
                  !at::isnan(near).any().item<bool>() && !at::isnan(far).any().item<bool>(),
              "ray origins and directions must be finite, near and far not NaN");
  const double *op = origins.data_ptr<double>(), *dp = dirs.data_ptr<double>(), *np = near.data_ptr<double>(),
               *fp = far.data_ptr<double>();
  const uint8_t* bp = bits.data_ptr<uint8_t>();
  at::Tensor counts = at::empty({R + 1}, at::dtype(at::kLong));
  int64_t* cp = counts.data_ptr<int64_t>();
  at::parallel_for(0, R, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      cp[r + 1] = nerf::march_ray(op + 3 * r, dp + 3 * r, g, bp, np[r], fp[r], dt_min, dt_max, cone, nullptr, 0);
  });
  cp[0] = 0;
  for (int64_t r = 0; r < R; ++r) cp[r + 1] += cp[r];
  const int64_t M = cp[R];
  at::Tensor ray_indices = alloc({M}, at::dtype(at::kLong)), ts = alloc({M, 2}, at::dtype(at::kDouble));
  int64_t* rp = ray_indices.data_ptr<int64_t>();
  double* tp = ts.data_ptr<double>();
  at::parallel_for(0, R, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t n = cp[r + 1] - cp[r];
      nerf::march_ray(op + 3 * r, dp + 3 * r, g, bp, np[r], fp[r], dt_min, dt_max, cone, tp + 2 * cp[r], n);
      for (int64_t i = cp[r]; i < cp[r + 1]; ++i) rp[i] = r;
    }
  });
  return {ray_indices, ts};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("march_rays", &march_rays);
  m.def("set_poison", &splat::set_poison);
  m.def("hash_encode_fwd", &hash_encode_fwd);
  m.def("hash_encode_bwd", &hash_encode_bwd);
  m.def("composite_fwd", &composite_fwd);
  m.def("composite_bwd", &composite_bwd);
}
