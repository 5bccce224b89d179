// Torch binding of the CUDA mesh launchers: the same functions, arguments and results as the CPU
// module (mesh_cpu.cpp), so kernels/mesh.py picks a module by the tensors' device.
#include <torch/extension.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "mesh_checks.h"
#include "mesh_cuda.h"
#include "splat_torch.h"  // poisoned allocation for tests

using splat::alloc;

constexpr auto CUDA = c10::DeviceType::CUDA;

namespace {

at::Tensor device_levels(const at::Tensor& levels, const at::Tensor& mips) {
  auto l = levels.to(at::kCPU, at::kLong).contiguous();
  TORCH_CHECK(l.dim() == 2 && l.size(1) == 3 && l.size(0) >= 1, "levels must be (L, 3): width, height, offset");
  std::vector<mesh::MipLevel> host(l.size(0));
  for (int64_t i = 0; i < l.size(0); ++i) {
    const int64_t* p = l.data_ptr<int64_t>() + 3 * i;
    host[i] = {p[0], p[1], p[2]};
    TORCH_CHECK(p[0] >= 1 && p[1] >= 1 && p[2] >= 0 && p[2] + p[0] * p[1] <= mips.size(1), "mip level ", i,
                " lies outside the texture buffer");
  }
  at::Tensor bytes = at::empty({int64_t(host.size() * sizeof(mesh::MipLevel))}, at::dtype(at::kByte));
  std::memcpy(bytes.data_ptr(), host.data(), host.size() * sizeof(mesh::MipLevel));
  return bytes.to(mips.device());
}

}  // namespace

std::vector<at::Tensor> rasterize_fwd(const at::Tensor& pos, const at::Tensor& tri, int64_t height, int64_t width) {
  mesh_checks::pos_tri(pos, tri, CUDA);
  splat::check_image_size(width, height);
  TORCH_CHECK(tri.size(0) < (int64_t(1) << 24), "at most 2^24 - 1 triangles (ids are stored exactly in float32)");
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0), H = height, W = width;
  at::Tensor rast = alloc({B, H, W, 4}, pos.options()), db = alloc({B, H, W, 4}, pos.options());
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_fwd", [&] {
    at::Tensor tris = at::empty({int64_t(std::max<int64_t>(F, 1) * sizeof(mesh::Tri<scalar_t>))}, pos.options().dtype(at::kByte));
    at::Tensor box = at::empty({std::max<int64_t>(F, 1) * 4}, pos.options().dtype(at::kInt));
    at::Tensor keys = at::empty({H * W}, pos.options().dtype(at::kLong));
    mesh::cuda::rasterize_fwd<scalar_t>(B, V, F, H, W, pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
                                        reinterpret_cast<mesh::Tri<scalar_t>*>(tris.data_ptr()), box.data_ptr<int32_t>(),
                                        reinterpret_cast<unsigned long long*>(keys.data_ptr<int64_t>()),
                                        rast.data_ptr<scalar_t>(), db.data_ptr<scalar_t>());
  });
  return {rast, db};
}

at::Tensor rasterize_bwd(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast, const at::Tensor& g_rast) {
  mesh_checks::pos_tri(pos, tri, CUDA);
  mesh_checks::rast(rast, "rast", tri.size(0), CUDA);
  mesh_checks::on_device(g_rast, "g_rast", CUDA);
  TORCH_CHECK(g_rast.sizes() == rast.sizes() && rast.size(0) == pos.size(0), "rast and its gradient must match pos' batch");
  at::Tensor g_pos = at::zeros_like(pos);
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_bwd", [&] {
    mesh::cuda::rasterize_bwd<scalar_t>(pos.size(0), pos.size(1), rast.size(1), rast.size(2), pos.data_ptr<scalar_t>(),
                                        tri.data_ptr<int32_t>(), rast.data_ptr<scalar_t>(), g_rast.data_ptr<scalar_t>(),
                                        g_pos.data_ptr<scalar_t>());
  });
  return g_pos;
}

std::vector<at::Tensor> interpolate_fwd(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri,
                                        const at::Tensor& rast_db, bool want_da) {
  mesh_checks::interpolate(attr, rast, tri, CUDA);
  if (want_da) {
    mesh_checks::on_device(rast_db, "rast_db", CUDA);
    TORCH_CHECK(rast_db.sizes() == rast.sizes(), "rast_db must match rast");
  }
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), C = attr.size(2);
  at::Tensor out = alloc({B, H, W, C}, attr.options());
  at::Tensor da = want_da ? alloc({B, H, W, 2 * C}, attr.options()) : at::empty({0}, attr.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_fwd", [&] {
    mesh::cuda::interpolate_fwd<scalar_t>(B, H * W, attr.size(1), C, attr.size(0) == 1, attr.data_ptr<scalar_t>(),
                                          rast.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
                                          want_da ? rast_db.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(),
                                          want_da ? da.data_ptr<scalar_t>() : nullptr);
  });
  return {out, da};
}

std::vector<at::Tensor> interpolate_bwd(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri,
                                        const at::Tensor& g_out) {
  mesh_checks::interpolate(attr, rast, tri, CUDA);
  mesh_checks::on_device(g_out, "g_out", CUDA);
  TORCH_CHECK(g_out.scalar_type() == attr.scalar_type(), "g_out must have attr's dtype");
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), C = attr.size(2);
  TORCH_CHECK(g_out.dim() == 4 && g_out.size(0) == B && g_out.size(1) == H && g_out.size(2) == W && g_out.size(3) == C,
              "g_out must be (B, H, W, C)");
  at::Tensor g_attr = at::zeros_like(attr), g_rast = alloc({B, H, W, 4}, rast.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_bwd", [&] {
    mesh::cuda::interpolate_bwd<scalar_t>(B, H * W, attr.size(1), C, attr.size(0) == 1, attr.data_ptr<scalar_t>(),
                                          rast.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(), g_out.data_ptr<scalar_t>(),
                                          g_attr.data_ptr<scalar_t>(), g_rast.data_ptr<scalar_t>());
  });
  return {g_attr, g_rast};
}

at::Tensor texture_fwd(const at::Tensor& mips, const at::Tensor& levels, const at::Tensor& uv, const at::Tensor& uv_da,
                       int64_t filter, int64_t boundary) {
  mesh_checks::texture(mips, uv, uv_da, filter, boundary, CUDA);
  at::Tensor lv = device_levels(levels, mips);
  const int64_t B = uv.size(0), N = uv.size(1) * uv.size(2), C = mips.size(2);
  at::Tensor out = alloc({B, uv.size(1), uv.size(2), C}, mips.options());
  AT_DISPATCH_FLOATING_TYPES(mips.scalar_type(), "texture_fwd", [&] {
    mesh::cuda::texture_fwd<scalar_t>(B, N, mips.size(1), C, mips.size(0) == 1, mips.data_ptr<scalar_t>(),
                                      reinterpret_cast<const mesh::MipLevel*>(lv.data_ptr()), int(levels.size(0)),
                                      uv.data_ptr<scalar_t>(), filter == 2 ? uv_da.data_ptr<scalar_t>() : nullptr,
                                      int(filter), int(boundary), out.data_ptr<scalar_t>());
  });
  return out;
}

std::vector<at::Tensor> texture_bwd(const at::Tensor& mips, const at::Tensor& levels, const at::Tensor& uv,
                                    const at::Tensor& uv_da, int64_t filter, int64_t boundary, const at::Tensor& g_out) {
  mesh_checks::texture(mips, uv, uv_da, filter, boundary, CUDA);
  mesh_checks::on_device(g_out, "g_out", CUDA);
  at::Tensor lv = device_levels(levels, mips);
  const int64_t B = uv.size(0), N = uv.size(1) * uv.size(2), C = mips.size(2);
  TORCH_CHECK(g_out.numel() == B * N * C, "g_out must be (B, H, W, C)");
  at::Tensor g_mips = at::zeros_like(mips), g_uv = alloc(uv.sizes(), uv.options());
  AT_DISPATCH_FLOATING_TYPES(mips.scalar_type(), "texture_bwd", [&] {
    mesh::cuda::texture_bwd<scalar_t>(B, N, mips.size(1), C, mips.size(0) == 1, mips.data_ptr<scalar_t>(),
                                      reinterpret_cast<const mesh::MipLevel*>(lv.data_ptr()), int(levels.size(0)),
                                      uv.data_ptr<scalar_t>(), filter == 2 ? uv_da.data_ptr<scalar_t>() : nullptr,
                                      int(filter), int(boundary), g_out.data_ptr<scalar_t>(), g_mips.data_ptr<scalar_t>(),
                                      g_uv.data_ptr<scalar_t>());
  });
  return {g_mips, g_uv};
}

at::Tensor antialias_fwd(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos, const at::Tensor& tri,
                         const at::Tensor& nbr) {
  mesh_checks::antialias(color, rast, pos, tri, nbr, CUDA);
  at::Tensor out = alloc(color.sizes(), color.options());
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_fwd", [&] {
    at::Tensor sil = at::empty({std::max<int64_t>(1, color.size(0) * tri.size(0))}, color.options().dtype(at::kByte));
    mesh::cuda::antialias_fwd<scalar_t>(color.size(0), color.size(1), color.size(2), color.size(3), pos.size(1),
                                        tri.size(0), color.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
                                        pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(), nbr.data_ptr<int32_t>(),
                                        sil.data_ptr<uint8_t>(), out.data_ptr<scalar_t>());
  });
  return out;
}

std::vector<at::Tensor> antialias_bwd(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos,
                                      const at::Tensor& tri, const at::Tensor& nbr, const at::Tensor& g_out) {
  mesh_checks::antialias(color, rast, pos, tri, nbr, CUDA);
  mesh_checks::on_device(g_out, "g_out", CUDA);
  TORCH_CHECK(g_out.sizes() == color.sizes(), "g_out must match color");
  at::Tensor g_color = alloc(color.sizes(), color.options()), g_pos = at::zeros_like(pos);
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_bwd", [&] {
    at::Tensor sil = at::empty({std::max<int64_t>(1, color.size(0) * tri.size(0))}, color.options().dtype(at::kByte));
    mesh::cuda::antialias_bwd<scalar_t>(color.size(0), color.size(1), color.size(2), color.size(3), pos.size(1),
                                        tri.size(0), color.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
                                        pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(), nbr.data_ptr<int32_t>(),
                                        sil.data_ptr<uint8_t>(), g_out.data_ptr<scalar_t>(), g_color.data_ptr<scalar_t>(),
                                        g_pos.data_ptr<scalar_t>());
  });
  return {g_color, g_pos};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { MESH_DEFINE_MODULE(m); }
