// Torch binding of the CUDA NeRF launchers: the same functions, arguments and results as the CPU
// module (nerf_cpu.cpp), so kernels/nerf.py picks a module by the tensors' device.
#include <torch/extension.h>

#include <cstring>
#include <vector>

#include "nerf_cuda.h"
#include "splat_torch.h"  // poisoned allocation for tests

using splat::alloc;

namespace {

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// The level table as raw bytes on the tensors' device, for the kernels to read.
at::Tensor device_levels(const at::Tensor& scales, const at::Tensor& res, const at::Tensor& dense,
                         const at::Device& device) {
  auto s = scales.to(at::kCPU, at::kDouble).contiguous(), r = res.to(at::kCPU, at::kLong).contiguous(),
       d = dense.to(at::kCPU, at::kBool).contiguous();
  const int64_t L = s.numel();
  std::vector<nerf::Level> host(L);
  for (int64_t l = 0; l < L; ++l) host[l] = {s.data_ptr<double>()[l], r.data_ptr<int64_t>()[l], d.data_ptr<bool>()[l]};
  at::Tensor bytes = at::empty({int64_t(L * sizeof(nerf::Level))}, at::dtype(at::kByte));
  std::memcpy(bytes.data_ptr(), host.data(), L * sizeof(nerf::Level));
  return bytes.to(device);
}

}  // namespace

at::Tensor hash_encode_fwd(const at::Tensor& x, const at::Tensor& table, const at::Tensor& scales, const at::Tensor& res,
                           const at::Tensor& dense) {
  check(x, "x"); check(table, "table");
  const int64_t N = x.size(0), L = table.size(0), T = table.size(1), F = table.size(2);
  at::Tensor lv = device_levels(scales, res, dense, table.device());
  at::Tensor out = alloc({N, L * F}, table.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hash_encode_fwd", [&] {
    nerf::cuda::hash_encode_fwd<scalar_t>(N, L, T, F, x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                                          reinterpret_cast<const nerf::Level*>(lv.data_ptr()), out.data_ptr<scalar_t>());
  });
  return out;
}

std::vector<at::Tensor> hash_encode_bwd(const at::Tensor& x, const at::Tensor& table, const at::Tensor& scales,
                                        const at::Tensor& res, const at::Tensor& dense, const at::Tensor& grad_out,
                                        bool need_x_grad) {
  check(x, "x"); check(table, "table"); check(grad_out, "grad_out");
  const int64_t N = x.size(0), L = table.size(0), T = table.size(1), F = table.size(2);
  at::Tensor lv = device_levels(scales, res, dense, table.device());
  at::Tensor g_table = at::zeros_like(table);
  at::Tensor g_x = need_x_grad ? alloc({N, 3}, x.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hash_encode_bwd", [&] {
    nerf::cuda::hash_encode_bwd<scalar_t>(N, L, T, F, x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                                          reinterpret_cast<const nerf::Level*>(lv.data_ptr()),
                                          grad_out.data_ptr<scalar_t>(), g_table.data_ptr<scalar_t>(),
                                          need_x_grad ? g_x.data_ptr<scalar_t>() : nullptr);
  });
  return {g_table, g_x};
}

std::vector<at::Tensor> composite_fwd(const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t0,
                                      const at::Tensor& t1, const at::Tensor& offsets, double t_min) {
  check(sigmas, "sigmas"); check(rgbs, "rgbs"); check(t0, "t_starts"); check(t1, "t_ends");
  const int64_t R = offsets.numel() - 1;
  at::Tensor off = offsets.to(at::kLong).contiguous();
  at::Tensor rgb = alloc({R, 3}, sigmas.options()), opacity = alloc({R}, sigmas.options()),
             depth = alloc({R}, sigmas.options());
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "composite_fwd", [&] {
    nerf::cuda::composite_fwd<scalar_t>(R, sigmas.data_ptr<scalar_t>(), rgbs.data_ptr<scalar_t>(),
                                        t0.data_ptr<scalar_t>(), t1.data_ptr<scalar_t>(), off.data_ptr<int64_t>(),
                                        scalar_t(t_min), rgb.data_ptr<scalar_t>(), opacity.data_ptr<scalar_t>(),
                                        depth.data_ptr<scalar_t>());
  });
  return {rgb, opacity, depth};
}

std::vector<at::Tensor> composite_bwd(const at::Tensor& sigmas, const at::Tensor& rgbs, const at::Tensor& t0,
                                      const at::Tensor& t1, const at::Tensor& offsets, double t_min,
                                      const at::Tensor& rgb, const at::Tensor& opacity, const at::Tensor& depth,
                                      const at::Tensor& g_rgb, const at::Tensor& g_opacity, const at::Tensor& g_depth) {
  const int64_t R = offsets.numel() - 1, M = sigmas.numel();
  at::Tensor off = offsets.to(at::kLong).contiguous();
  at::Tensor g_sigma = alloc({M}, sigmas.options()), g_rgbs = alloc({M, 3}, sigmas.options());
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "composite_bwd", [&] {
    using T = scalar_t;
    nerf::cuda::composite_bwd<T>(R, sigmas.data_ptr<T>(), rgbs.data_ptr<T>(), t0.data_ptr<T>(), t1.data_ptr<T>(),
                                 off.data_ptr<int64_t>(), T(t_min), rgb.data_ptr<T>(), opacity.data_ptr<T>(),
                                 depth.data_ptr<T>(), g_rgb.data_ptr<T>(), g_opacity.data_ptr<T>(),
                                 g_depth.data_ptr<T>(), g_sigma.data_ptr<T>(), g_rgbs.data_ptr<T>());
  });
  return {g_sigma, g_rgbs};
}

std::vector<at::Tensor> march_rays(const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& near,
                                   const at::Tensor& far, const at::Tensor& bits, const at::Tensor& centre,
                                   const at::Tensor& half, double dt_min, double dt_max, double cone) {
  check(origins, "origins"); check(dirs, "dirs"); check(bits, "occupancy bits");
  TORCH_CHECK(origins.scalar_type() == at::kDouble && dirs.scalar_type() == at::kDouble, "rays must be float64");
  TORCH_CHECK(bits.dim() == 4 && bits.scalar_type() == at::kByte, "occupancy bits must be uint8 (cascades, G, G, G)");
  auto c = centre.to(at::kCPU, at::kDouble).contiguous(), h = half.to(at::kCPU, at::kDouble).contiguous();
  nerf::Grid g;
  for (int a = 0; a < 3; ++a) { g.centre[a] = c.data_ptr<double>()[a]; g.half[a] = h.data_ptr<double>()[a]; }
  g.cascades = bits.size(0);
  g.res = bits.size(1);
  const int64_t R = origins.size(0);
  auto o = origins.options();
  at::Tensor counts = at::zeros({R + 1}, o.dtype(at::kLong));
  nerf::cuda::march_count(R, origins.data_ptr<double>(), dirs.data_ptr<double>(), near.data_ptr<double>(),
                          far.data_ptr<double>(), g, bits.data_ptr<uint8_t>(), dt_min, dt_max, cone,
                          counts.data_ptr<int64_t>() + 1);
  at::Tensor offsets = counts.cumsum(0);
  const int64_t M = offsets[R].item<int64_t>();
  at::Tensor ray_indices = alloc({M}, o.dtype(at::kLong)), ts = alloc({M, 2}, o);
  nerf::cuda::march_fill(R, origins.data_ptr<double>(), dirs.data_ptr<double>(), near.data_ptr<double>(),
                         far.data_ptr<double>(), g, bits.data_ptr<uint8_t>(), dt_min, dt_max, cone,
                         offsets.data_ptr<int64_t>(), ray_indices.data_ptr<int64_t>(), ts.data_ptr<double>());
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
