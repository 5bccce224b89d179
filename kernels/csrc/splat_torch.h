// Torch-side helpers shared by the CPU and CUDA bindings: poisoned allocation for tests,
// unpacking the camera, and the module's function table.
#pragma once
#include <torch/extension.h>

#include <limits>

#include "splat_math.h"

namespace splat {

inline bool& poison_flag() {
  static bool on = false;  // tests fill every output with NaN first, so unwritten elements show
  return on;
}

inline void set_poison(bool on) { poison_flag() = on; }

inline at::Tensor alloc(at::IntArrayRef shape, const at::TensorOptions& opts) {
  at::Tensor t = at::empty(shape, opts);
  if (poison_flag()) {
    if (at::isFloatingType(t.scalar_type())) t.fill_(std::numeric_limits<double>::quiet_NaN());
    else t.fill_(std::numeric_limits<int32_t>::min());
  }
  return t;
}

inline Camera make_camera(const at::Tensor& viewmat, const at::Tensor& K, int64_t width, int64_t height,
                          double near_plane, double far_plane, double eps2d, bool antialiased) {
  TORCH_CHECK(viewmat.numel() == 16 && K.numel() == 9, "viewmat must be 4x4 and K 3x3");
  at::Tensor v = viewmat.to(at::kCPU, at::kDouble).contiguous(), k = K.to(at::kCPU, at::kDouble).contiguous();
  const double* vp = v.data_ptr<double>();
  const double* kp = k.data_ptr<double>();
  Camera cam;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) cam.R[3 * i + j] = vp[4 * i + j];
    cam.t[i] = vp[4 * i + 3];
  }
  cam.fx = kp[0]; cam.fy = kp[4]; cam.cx = kp[2]; cam.cy = kp[5];
  cam.width = int(width); cam.height = int(height);
  cam.near_plane = near_plane; cam.far_plane = far_plane; cam.eps2d = eps2d; cam.antialiased = antialiased;
  return cam;
}

}  // namespace splat

// The same functions, names and signatures in both modules: kernels/splat.py picks one by device.
#define SPLAT_DEFINE_MODULE(m)                      \
  m.def("set_poison", &splat::set_poison);          \
  m.def("project_fwd", &project_fwd);               \
  m.def("project_bwd", &project_bwd);               \
  m.def("sh_fwd", &sh_fwd);                         \
  m.def("sh_bwd", &sh_bwd);                         \
  m.def("bin_gaussians", &bin_gaussians);           \
  m.def("raster_fwd", &raster_fwd);                 \
  m.def("raster_bwd", &raster_bwd)
