// NeRF ops on the CPU: hash encoding and compositing of packed samples (forward and backward).
// Threads from torch's OpenMP pool; every output element is written by exactly one thread, so
// results do not depend on the thread count (the table gradient is split by level, not by point).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include "nerf_math.h"
#include "splat_torch.h"  // poisoned allocation for tests

using splat::alloc;

namespace {

std::vector<nerf::Level> levels(const at::Tensor& scales, const at::Tensor& res, const at::Tensor& dense) {
  auto s = scales.to(at::kDouble).contiguous(), r = res.to(at::kLong).contiguous(), d = dense.to(at::kBool).contiguous();
  std::vector<nerf::Level> out(s.numel());
  for (int64_t l = 0; l < s.numel(); ++l) out[l] = {s.data_ptr<double>()[l], r.data_ptr<int64_t>()[l], d.data_ptr<bool>()[l]};
  return out;
}

}  // namespace

at::Tensor hash_encode_fwd(const at::Tensor& x, const at::Tensor& table, const at::Tensor& scales, const at::Tensor& res,
                           const at::Tensor& dense) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3 && table.dim() == 3, "x must be (N, 3) and table (L, T, F)");
  TORCH_CHECK(x.scalar_type() == table.scalar_type(), "x and table must share a dtype");
  const auto lv = levels(scales, res, dense);
  const int64_t N = x.size(0), L = table.size(0), T = table.size(1), F = table.size(2);
  TORCH_CHECK(int64_t(lv.size()) == L, "one scale per level");
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
  const auto lv = levels(scales, res, dense);
  const int64_t N = x.size(0), L = table.size(0), T = table.size(1), F = table.size(2);
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

std::vector<at::Tensor> composite_fwd(const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t0,
                                      const at::Tensor& t1, const at::Tensor& offsets, double t_min) {
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
  const int64_t R = offsets.numel() - 1, M = sigmas.numel();
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
  auto c = centre.to(at::kCPU, at::kDouble).contiguous(), h = half.to(at::kCPU, at::kDouble).contiguous();
  nerf::Grid g;
  for (int a = 0; a < 3; ++a) { g.centre[a] = c.data_ptr<double>()[a]; g.half[a] = h.data_ptr<double>()[a]; }
  g.cascades = bits.size(0);
  g.res = bits.size(1);
  return g;
}

std::vector<at::Tensor> march_rays(const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& near,
                                   const at::Tensor& far, const at::Tensor& bits, const at::Tensor& centre,
                                   const at::Tensor& half, double dt_min, double dt_max, double cone) {
  TORCH_CHECK(origins.scalar_type() == at::kDouble && dirs.scalar_type() == at::kDouble, "rays must be float64");
  const nerf::Grid g = make_grid(bits, centre, half);
  const int64_t R = origins.size(0);
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
