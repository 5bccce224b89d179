// Torch binding of the CUDA launchers: the same functions, arguments and results as the CPU
// module (splat_cpu.cpp), so kernels/splat.py picks a module by the tensors' device.
#include <torch/extension.h>

#include <vector>

#include "splat_cuda.h"
#include "splat_torch.h"

using namespace splat;

namespace {

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

}  // namespace

std::vector<at::Tensor> project_fwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& log_scales,
                                    const at::Tensor& viewmat, const at::Tensor& K, int64_t width, int64_t height,
                                    double near_plane, double far_plane, double eps2d, bool antialiased) {
  check(means, "means"); check(quats, "quats"); check(log_scales, "log_scales");
  const int64_t N = means.size(0);
  Camera cam = make_camera(viewmat, K, width, height, near_plane, far_plane, eps2d, antialiased);
  auto o = means.options();
  at::Tensor m2 = alloc({N, 2}, o), co = alloc({N, 3}, o), de = alloc({N}, o), cp = alloc({N}, o),
             ra = alloc({N}, o.dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_fwd", [&] {
    cuda::project_fwd<scalar_t>(N, means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(),
                                log_scales.data_ptr<scalar_t>(), cam, m2.data_ptr<scalar_t>(), co.data_ptr<scalar_t>(),
                                de.data_ptr<scalar_t>(), ra.data_ptr<int32_t>(), cp.data_ptr<scalar_t>());
  });
  return {m2, co, de, ra, cp};
}

std::vector<at::Tensor> project_bwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& log_scales,
                                    const at::Tensor& viewmat, const at::Tensor& K, int64_t width, int64_t height,
                                    double near_plane, double far_plane, double eps2d, bool antialiased,
                                    const at::Tensor& radii, const at::Tensor& v_means2d, const at::Tensor& v_conics,
                                    const at::Tensor& v_depths, const at::Tensor& v_comp, bool viewmat_grad) {
  const int64_t N = means.size(0);
  Camera cam = make_camera(viewmat, K, width, height, near_plane, far_plane, eps2d, antialiased);
  auto o = means.options();
  at::Tensor vm = alloc({N, 3}, o), vq = alloc({N, 4}, o), vs = alloc({N, 3}, o), v12 = at::zeros({12}, o);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_bwd", [&] {
    using T = scalar_t;
    cuda::project_bwd<T>(N, means.data_ptr<T>(), quats.data_ptr<T>(), log_scales.data_ptr<T>(), cam,
                         radii.data_ptr<int32_t>(), v_means2d.data_ptr<T>(), v_conics.data_ptr<T>(),
                         v_depths.data_ptr<T>(), v_comp.data_ptr<T>(), vm.data_ptr<T>(), vq.data_ptr<T>(),
                         vs.data_ptr<T>(), viewmat_grad ? v12.data_ptr<T>() : nullptr);
  });
  at::Tensor v_view = at::zeros({4, 4}, o);
  v_view.index_put_({at::indexing::Slice(0, 3), at::indexing::Slice(0, 3)}, v12.narrow(0, 0, 9).view({3, 3}));
  v_view.index_put_({at::indexing::Slice(0, 3), 3}, v12.narrow(0, 9, 3));
  return {vm, vq, vs, v_view};
}

at::Tensor sh_fwd(const at::Tensor& coeffs, const at::Tensor& means, const at::Tensor& campos, int64_t degree) {
  check(coeffs, "coeffs"); check(means, "means");
  const int64_t N = coeffs.size(0), K = coeffs.size(1);
  at::Tensor colors = alloc({N, 3}, coeffs.options());
  at::Tensor cp = campos.to(coeffs.options()).contiguous();
  AT_DISPATCH_FLOATING_TYPES(coeffs.scalar_type(), "sh_fwd", [&] {
    cuda::sh_fwd<scalar_t>(N, int(K), int(degree), coeffs.data_ptr<scalar_t>(), means.data_ptr<scalar_t>(),
                           cp.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>());
  });
  return colors;
}

std::vector<at::Tensor> sh_bwd(const at::Tensor& coeffs, const at::Tensor& means, const at::Tensor& campos,
                               int64_t degree, const at::Tensor& v_colors) {
  const int64_t N = coeffs.size(0), K = coeffs.size(1);
  at::Tensor vc = alloc({N, K, 3}, coeffs.options()), vm = alloc({N, 3}, coeffs.options()),
             vp = at::zeros({3}, coeffs.options());
  at::Tensor cp = campos.to(coeffs.options()).contiguous();
  AT_DISPATCH_FLOATING_TYPES(coeffs.scalar_type(), "sh_bwd", [&] {
    using T = scalar_t;
    cuda::sh_bwd<T>(N, int(K), int(degree), coeffs.data_ptr<T>(), means.data_ptr<T>(), cp.data_ptr<T>(),
                    v_colors.data_ptr<T>(), vc.data_ptr<T>(), vm.data_ptr<T>(), vp.data_ptr<T>());
  });
  return {vc, vm, vp};
}

std::vector<at::Tensor> bin_gaussians(const at::Tensor& means2d, const at::Tensor& radii, const at::Tensor& depths,
                                      int64_t width, int64_t height) {
  check(means2d, "means2d"); check(radii, "radii"); check(depths, "depths");
  const int64_t N = means2d.size(0);
  const int64_t T_count = ((width + TILE - 1) / TILE) * ((height + TILE - 1) / TILE);
  auto lo = means2d.options().dtype(at::kLong);
  at::Tensor counts = at::empty({N}, lo), g_offsets = at::empty({N + 1}, lo);
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "bin_counts", [&] {
    cuda::bin_counts<scalar_t>(N, means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), int(width), int(height),
                               counts.data_ptr<int64_t>());
  });
  cuda::exclusive_scan(N, counts.data_ptr<int64_t>(), g_offsets.data_ptr<int64_t>());
  const int64_t M = g_offsets[N].item<int64_t>();
  at::Tensor ids = alloc({M}, means2d.options().dtype(at::kInt)), tile_offsets = at::empty({T_count + 1}, lo);
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "bin_sort", [&] {
    cuda::bin_sort<scalar_t>(N, M, means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
                             depths.data_ptr<scalar_t>(), int(width), int(height), g_offsets.data_ptr<int64_t>(),
                             ids.data_ptr<int32_t>(), tile_offsets.data_ptr<int64_t>());
  });
  return {tile_offsets, ids, g_offsets, at::empty({0}, lo)};  // the GPU backward uses atomics, no inverse map
}

std::vector<at::Tensor> raster_fwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                   const at::Tensor& opacities, const at::Tensor& depths, const at::Tensor& background,
                                   const at::Tensor& tile_offsets, const at::Tensor& ids, int64_t width,
                                   int64_t height) {
  const int64_t C = colors.size(1);
  TORCH_CHECK(C >= 1 && C <= 4, "colors must have 1 to 4 channels");
  auto o = colors.options();
  at::Tensor rgb = alloc({height, width, C}, o), alpha = alloc({height, width}, o), depth = alloc({height, width}, o),
             last = alloc({height, width}, o.dtype(at::kInt));
  at::Tensor bg = background.to(o).contiguous();
  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "raster_fwd", [&] {
    using T = scalar_t;
    cuda::raster_fwd<T>(means2d.size(0), int(C), means2d.data_ptr<T>(), conics.data_ptr<T>(), colors.data_ptr<T>(),
                        opacities.data_ptr<T>(), depths.data_ptr<T>(), bg.data_ptr<T>(),
                        tile_offsets.data_ptr<int64_t>(), ids.data_ptr<int32_t>(), int(width), int(height),
                        rgb.data_ptr<T>(), alpha.data_ptr<T>(), depth.data_ptr<T>(), last.data_ptr<int32_t>());
  });
  return {rgb, alpha, depth, last};
}

std::vector<at::Tensor> raster_bwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                   const at::Tensor& opacities, const at::Tensor& depths, const at::Tensor& background,
                                   const at::Tensor& tile_offsets, const at::Tensor& ids, const at::Tensor& /*g_offsets*/,
                                   const at::Tensor& /*g_inters*/, int64_t width, int64_t height,
                                   const at::Tensor& alpha, const at::Tensor& last, const at::Tensor& v_rgb,
                                   const at::Tensor& v_alpha, const at::Tensor& v_depth, bool /*absgrad*/) {
  const int64_t N = means2d.size(0), C = colors.size(1);
  auto o = colors.options();
  at::Tensor vm = at::zeros({N, 2}, o), vc = at::zeros({N, 3}, o), vcol = at::zeros({N, C}, o),
             vo = at::zeros({N}, o), vd = at::zeros({N}, o), ab = at::zeros({N, 2}, o);
  at::Tensor bg = background.to(o).contiguous();
  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "raster_bwd", [&] {
    using T = scalar_t;
    cuda::raster_bwd<T>(N, int(C), means2d.data_ptr<T>(), conics.data_ptr<T>(), colors.data_ptr<T>(),
                        opacities.data_ptr<T>(), depths.data_ptr<T>(), bg.data_ptr<T>(),
                        tile_offsets.data_ptr<int64_t>(), ids.data_ptr<int32_t>(), int(width), int(height),
                        alpha.data_ptr<T>(), last.data_ptr<int32_t>(), v_rgb.data_ptr<T>(), v_alpha.data_ptr<T>(),
                        v_depth.data_ptr<T>(), vm.data_ptr<T>(), vc.data_ptr<T>(), vcol.data_ptr<T>(),
                        vo.data_ptr<T>(), vd.data_ptr<T>(), ab.data_ptr<T>());
  });
  return {vm, vc, vcol, vo, vd, ab};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { SPLAT_DEFINE_MODULE(m); }
