// Preconditions of the mesh ops, shared by the CPU module (mesh_cpu.cpp) and the CUDA binding
// (mesh_cuda_bind.cpp): every argument is checked before any pointer is touched, so a bad direct call
// raises on either device instead of reading outside a buffer. Host code only.
#pragma once

#include <torch/extension.h>

namespace mesh_checks {

inline void on_device(const at::Tensor& t, const char* name, c10::DeviceType dev) {
  TORCH_CHECK(t.device().type() == dev && t.is_contiguous(), name, " must be a contiguous ",
              dev == c10::DeviceType::CUDA ? "CUDA" : "CPU", " tensor");
}

inline void pos_tri(const at::Tensor& pos, const at::Tensor& tri, c10::DeviceType dev) {
  on_device(pos, "pos", dev);
  on_device(tri, "tri", dev);
  TORCH_CHECK(pos.dim() == 3 && pos.size(2) == 4, "pos must be (B, V, 4) clip-space positions");
  TORCH_CHECK(at::isFloatingType(pos.scalar_type()), "pos must be floating point");
  TORCH_CHECK(tri.dim() == 2 && tri.size(1) == 3 && tri.scalar_type() == at::kInt, "tri must be (F, 3) int32");
  if (tri.numel()) {
    const int64_t lo = tri.min().item<int64_t>(), hi = tri.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < pos.size(1), "tri indexes vertices outside pos (", lo, "..", hi, " of ", pos.size(1), ")");
  }
}

inline void rast(const at::Tensor& rast, const char* name, int64_t faces, c10::DeviceType dev) {
  on_device(rast, name, dev);
  TORCH_CHECK(rast.dim() == 4 && rast.size(3) == 4, name, " must be (B, H, W, 4)");
  if (rast.numel()) {
    auto ids = rast.select(3, 3);
    const double lo = ids.min().item<double>(), hi = ids.max().item<double>();
    TORCH_CHECK(lo >= 0 && hi <= double(faces), name, " holds triangle ids outside the mesh");
  }
}

// What interpolate's forward and backward both read: attr (1 or B, V, C) of rast's dtype, and faces
// that index it.
inline void interpolate(const at::Tensor& attr, const at::Tensor& r, const at::Tensor& tri, c10::DeviceType dev) {
  on_device(attr, "attr", dev);
  on_device(tri, "tri", dev);
  TORCH_CHECK(tri.dim() == 2 && tri.size(1) == 3 && tri.scalar_type() == at::kInt, "tri must be (F, 3) int32");
  rast(r, "rast", tri.size(0), dev);
  TORCH_CHECK(attr.dim() == 3 && (attr.size(0) == 1 || attr.size(0) == r.size(0)), "attr must be (1 or B, V, C)");
  TORCH_CHECK(attr.scalar_type() == r.scalar_type(), "attr and rast must share a dtype");
  if (tri.numel())
    TORCH_CHECK(tri.min().item<int64_t>() >= 0 && tri.max().item<int64_t>() < attr.size(1),
                "tri indexes vertices outside attr");
}

inline void texture(const at::Tensor& mips, const at::Tensor& uv, const at::Tensor& uv_da, int64_t filter,
                    int64_t boundary, c10::DeviceType dev) {
  on_device(mips, "texture", dev);
  on_device(uv, "uv", dev);
  TORCH_CHECK(mips.dim() == 3, "texture must be (1 or B, texels, C)");
  TORCH_CHECK(uv.dim() == 4 && uv.size(3) == 2, "uv must be (B, H, W, 2)");
  TORCH_CHECK(mips.size(0) == 1 || mips.size(0) == uv.size(0), "texture batch must be 1 or uv's");
  TORCH_CHECK(uv.scalar_type() == mips.scalar_type(), "uv and texture must share a dtype");
  TORCH_CHECK(filter >= 0 && filter <= 2 && boundary >= 0 && boundary <= 1, "bad filter or boundary mode");
  if (filter == 2) {
    on_device(uv_da, "uv_da", dev);
    TORCH_CHECK(uv_da.dim() == 4 && uv_da.size(3) == 4 && uv_da.size(0) == uv.size(0) && uv_da.size(1) == uv.size(1) &&
                    uv_da.size(2) == uv.size(2), "uv_da must be (B, H, W, 4)");
  }
}

inline void antialias(const at::Tensor& color, const at::Tensor& r, const at::Tensor& pos, const at::Tensor& tri,
                      const at::Tensor& nbr, c10::DeviceType dev) {
  on_device(color, "color", dev);
  pos_tri(pos, tri, dev);
  rast(r, "rast", tri.size(0), dev);
  on_device(nbr, "neighbours", dev);
  TORCH_CHECK(color.dim() == 4 && color.size(0) == r.size(0) && color.size(1) == r.size(1) &&
                  color.size(2) == r.size(2), "color must be (B, H, W, C) like rast");
  TORCH_CHECK(color.scalar_type() == pos.scalar_type() && r.scalar_type() == pos.scalar_type(),
              "color, rast and pos must share a dtype");
  TORCH_CHECK(pos.size(0) == r.size(0), "pos must have rast's batch");
  TORCH_CHECK(nbr.sizes() == tri.sizes() && nbr.scalar_type() == at::kInt, "neighbours must be (F, 3) int32");
  if (nbr.numel())
    TORCH_CHECK(nbr.min().item<int64_t>() >= -1 && nbr.max().item<int64_t>() < tri.size(0),
                "neighbours index outside the mesh");
}

}  // namespace mesh_checks
