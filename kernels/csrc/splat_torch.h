// Torch-side helpers shared by the CPU and CUDA bindings: poisoned allocation for tests,
// unpacking the camera, and the module's function table.
#pragma once
#include <torch/extension.h>

#include <cmath>
#include <initializer_list>
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

// Preconditions, checked before any pointer is touched: a bad call raises, never crashes.
inline void check_image_size(int64_t width, int64_t height) {
  TORCH_CHECK(width >= 1 && height >= 1 && width <= (1 << 15) && height <= (1 << 15),
              "image size must be 1..32768 pixels per side, got ", width, "x", height);
}

// t has `dims` dimensions, size n along the first (n < 0: any), and the given trailing sizes.
inline void check_shape(const at::Tensor& t, const char* name, int64_t n, std::initializer_list<int64_t> rest) {
  TORCH_CHECK(t.dim() == int64_t(1 + rest.size()), name, " must have ", 1 + rest.size(), " dimensions, got ", t.dim());
  TORCH_CHECK(n < 0 || t.size(0) == n, name, " must have ", n, " rows, got ", t.size(0));
  int64_t d = 1;
  for (int64_t s : rest) {
    TORCH_CHECK(s < 0 || t.size(d) == s, name, " must have size ", s, " in dimension ", d, ", got ", t.size(d));
    ++d;
  }
}

inline void check_same_dtype(const at::Tensor& a, const at::Tensor& b, const char* name) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), name, " must have the dtype of the means");
}

inline Camera make_camera(const at::Tensor& viewmat, const at::Tensor& K, int64_t width, int64_t height,
                          double near_plane, double far_plane, double eps2d, bool antialiased) {
  TORCH_CHECK(viewmat.numel() == 16 && K.numel() == 9, "viewmat must be 4x4 and K 3x3");
  check_image_size(width, height);
  TORCH_CHECK(near_plane > 0 && far_plane > near_plane && eps2d >= 0, "need 0 < near < far and eps2d >= 0");
  at::Tensor v = viewmat.to(at::kCPU, at::kDouble).contiguous(), k = K.to(at::kCPU, at::kDouble).contiguous();
  const double* vp = v.data_ptr<double>();
  const double* kp = k.data_ptr<double>();
  Camera cam;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) cam.R[3 * i + j] = vp[4 * i + j];
    cam.t[i] = vp[4 * i + 3];
  }
  cam.fx = kp[0]; cam.fy = kp[4]; cam.cx = kp[2]; cam.cy = kp[5];
  TORCH_CHECK(std::isfinite(cam.fx) && std::isfinite(cam.fy) && cam.fx > 0 && cam.fy > 0 && std::isfinite(cam.cx) &&
                  std::isfinite(cam.cy), "K must have finite, positive focal lengths");
  for (int i = 0; i < 16; ++i) TORCH_CHECK(std::isfinite(vp[i]), "viewmat must be finite");
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
