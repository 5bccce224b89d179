// Per-Gaussian and per-pixel math of Gaussian splatting, shared by the CPU (C++/OpenMP) and
// CUDA paths: the two differ only in scheduling. The specification is
// kernels/splat_reference.py; every function here mirrors a step of it, with its gradient.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define HD __host__ __device__ __forceinline__
#else
#define HD inline
#endif

namespace splat {

constexpr int TILE = 16;
constexpr double ALPHA_MAX = 0.99;
constexpr double ALPHA_MIN = 1.0 / 255.0;
constexpr double T_MIN = 1e-4;
constexpr double SIGMA_EXTENT = 3.0;

template <typename T> HD T clampv(T v, T lo, T hi) { return v < lo ? lo : (v > hi ? hi : v); }

// exp for the per-pixel loop. float: a branch-free Cephes-style polynomial (relative error
// below 2e-7) that compilers vectorise; double: the library exp, so that float64 tests
// compare with the torch reference to rounding.
// e^g for |g| ≤ ln(2)/2 (Cephes' expf polynomial), for a float or a vector of floats.
template <typename V> HD V exp_poly(V g) {
  V p = g * 0.0f + 1.9875691500e-4f;
  p = p * g + 1.3981999507e-3f;
  p = p * g + 8.3334519073e-3f;
  p = p * g + 4.1665795894e-2f;
  p = p * g + 1.6666665459e-1f;
  p = p * g + 5.0000001201e-1f;
  return p * g * g + g + 1.0f;
}

HD float fast_exp(float x) {
  x = clampv(x, -87.0f, 88.0f);
  float n = floorf(x * 1.44269504088896341f + 0.5f);
  union { int32_t i; float f; } u;
  u.i = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  return exp_poly(x - n * 0.693359375f + n * 2.12194440e-4f) * u.f;
}
HD double fast_exp(double x) { return exp(x); }

// ---------------------------------------------------------------- small matrices (row-major)
template <typename T> struct M3 { T m[9]; };

template <typename T> HD M3<T> quat_to_rot(const T q[4]) {
  T n = sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  T w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n;
  return {{1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
           2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
           2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)}};
}

// dL/dq for R = quat_to_rot(q), given G = dL/dR.
template <typename T> HD void quat_to_rot_vjp(const T q[4], const T G[9], T out[4]) {
  T n = sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  T w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n;
  T gw = 2 * (-z * G[1] + y * G[2] + z * G[3] - x * G[5] - y * G[6] + x * G[7]);
  T gx = 2 * (y * G[1] + z * G[2] + y * G[3] - 2 * x * G[4] - w * G[5] + z * G[6] + w * G[7] - 2 * x * G[8]);
  T gy = 2 * (-2 * y * G[0] + x * G[1] + w * G[2] + x * G[3] + z * G[5] - w * G[6] + z * G[7] - 2 * y * G[8]);
  T gz = 2 * (-2 * z * G[0] - w * G[1] + x * G[2] + w * G[3] - 2 * z * G[4] + y * G[5] + x * G[6] + y * G[7]);
  T dot = w * gw + x * gx + y * gy + z * gz;  // through the normalisation q / |q|
  out[0] = (gw - w * dot) / n;
  out[1] = (gx - x * dot) / n;
  out[2] = (gy - y * dot) / n;
  out[3] = (gz - z * dot) / n;
}

// ---------------------------------------------------------------- projection
struct Camera {
  double R[9], t[3];  // world-to-camera
  double fx, fy, cx, cy;
  int width, height;
  double near_plane, far_plane, eps2d;
  bool antialiased;
};

template <typename T> struct Projected {
  T mean2d[2], conic[3], depth, compensation;
  int32_t radius;  // 0: culled
};

// Everything the forward computes that the backward needs again.
template <typename T> struct ProjectionState {
  T p[3], tx, ty;
  bool clamp_x, clamp_y;
  T J[6];   // 2x3
  M3<T> Rq;
  T s[3];
  T Sigma[9], C[9];
  T a, b, c, det, det_raw;
  bool valid;
};

template <typename T>
HD ProjectionState<T> project_state(const T mean[3], const T quat[4], const T log_scale[3], const Camera& cam) {
  ProjectionState<T> st;
  const double* R = cam.R;
  for (int i = 0; i < 3; ++i)
    st.p[i] = T(R[3 * i]) * mean[0] + T(R[3 * i + 1]) * mean[1] + T(R[3 * i + 2]) * mean[2] + T(cam.t[i]);
  T x = st.p[0], y = st.p[1], z = st.p[2];
  bool in_depth = z > T(cam.near_plane) && z < T(cam.far_plane);
  if (!in_depth) z = 1;  // as the reference: keeps culled rows finite
  T fx = T(cam.fx), fy = T(cam.fy), cx = T(cam.cx), cy = T(cam.cy);
  T W = T(cam.width), H = T(cam.height);
  T lxn = cx / fx + T(0.3) * W / (2 * fx), lxp = (W - cx) / fx + T(0.3) * W / (2 * fx);
  T lyn = cy / fy + T(0.3) * H / (2 * fy), lyp = (H - cy) / fy + T(0.3) * H / (2 * fy);
  T u = x / z, v = y / z;
  st.clamp_x = u < -lxn || u > lxp;
  st.clamp_y = v < -lyn || v > lyp;
  st.tx = z * clampv(u, -lxn, lxp);
  st.ty = z * clampv(v, -lyn, lyp);
  T* J = st.J;
  J[0] = fx / z; J[1] = 0; J[2] = -fx * st.tx / (z * z);
  J[3] = 0; J[4] = fy / z; J[5] = -fy * st.ty / (z * z);
  st.Rq = quat_to_rot(quat);
  for (int j = 0; j < 3; ++j) st.s[j] = exp(log_scale[j]);
  T M[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) M[3 * i + j] = st.Rq.m[3 * i + j] * st.s[j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) st.Sigma[3 * i + j] = M[3 * i] * M[3 * j] + M[3 * i + 1] * M[3 * j + 1] + M[3 * i + 2] * M[3 * j + 2];
  T RS[9];  // R Σ
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      RS[3 * i + j] = T(R[3 * i]) * st.Sigma[j] + T(R[3 * i + 1]) * st.Sigma[3 + j] + T(R[3 * i + 2]) * st.Sigma[6 + j];
  for (int i = 0; i < 3; ++i)  // C = R Σ Rᵀ
    for (int j = 0; j < 3; ++j)
      st.C[3 * i + j] = RS[3 * i] * T(R[3 * j]) + RS[3 * i + 1] * T(R[3 * j + 1]) + RS[3 * i + 2] * T(R[3 * j + 2]);
  T JC[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      JC[3 * i + j] = J[3 * i] * st.C[j] + J[3 * i + 1] * st.C[3 + j] + J[3 * i + 2] * st.C[6 + j];
  T a0 = JC[0] * J[0] + JC[1] * J[1] + JC[2] * J[2];
  T b = JC[0] * J[3] + JC[1] * J[4] + JC[2] * J[5];
  T c0 = JC[3] * J[3] + JC[4] * J[4] + JC[5] * J[5];
  st.det_raw = a0 * c0 - b * b;
  st.a = a0 + T(cam.eps2d);
  st.c = c0 + T(cam.eps2d);
  st.b = b;
  st.det = st.a * st.c - b * b;
  st.valid = in_depth && st.det > 0;
  return st;
}

template <typename T>
HD Projected<T> project_one(const T mean[3], const T quat[4], const T log_scale[3], const Camera& cam) {
  ProjectionState<T> st = project_state(mean, quat, log_scale, cam);
  Projected<T> out;
  bool in_depth = st.p[2] > T(cam.near_plane) && st.p[2] < T(cam.far_plane);
  T z = in_depth ? st.p[2] : T(1);
  out.depth = st.p[2];
  out.mean2d[0] = T(cam.fx) * st.p[0] / z + T(cam.cx);
  out.mean2d[1] = T(cam.fy) * st.p[1] / z + T(cam.cy);
  T det = st.valid ? st.det : T(1);
  out.conic[0] = st.c / det;
  out.conic[1] = -st.b / det;
  out.conic[2] = st.a / det;
  T r = st.det_raw / det;
  out.compensation = cam.antialiased ? sqrt(r > 0 ? r : T(0)) : T(1);
  T half = T(0.5) * (st.a + st.c);
  T disc = half * half - det;
  T lambda_max = half + sqrt(disc > T(0.1) ? disc : T(0.1));
  T radius = ceil(T(SIGMA_EXTENT) * sqrt(lambda_max));
  bool on_screen = out.mean2d[0] + radius > 0 && out.mean2d[0] - radius < T(cam.width) &&
                   out.mean2d[1] + radius > 0 && out.mean2d[1] - radius < T(cam.height);
  out.radius = (st.valid && on_screen && radius > 0) ? static_cast<int32_t>(radius) : 0;
  return out;
}

// Gradient of one Gaussian's projection. Only called for Gaussians with radius > 0 (culled
// ones get zero gradient). v_view (12: R row-major, then t) is added to, not overwritten.
template <typename T>
HD void project_one_vjp(const T mean[3], const T quat[4], const T log_scale[3], const Camera& cam,
                        const T v_mean2d[2], const T v_conic[3], T v_depth, T v_comp,
                        T v_mean[3], T v_quat[4], T v_log_scale[3], T* v_view) {
  ProjectionState<T> st = project_state(mean, quat, log_scale, cam);
  const T a = st.a, b = st.b, c = st.c, det = st.det;
  const T id = 1 / det, id2 = id * id;
  // conic = (c, -b, a) / det
  T ga = v_conic[0] * (-c * c * id2) + v_conic[1] * (b * c * id2) + v_conic[2] * (id - a * c * id2);
  T gb = v_conic[0] * (2 * b * c * id2) + v_conic[1] * (-id - 2 * b * b * id2) + v_conic[2] * (2 * a * b * id2);
  T gc = v_conic[0] * (id - a * c * id2) + v_conic[1] * (a * b * id2) + v_conic[2] * (-a * a * id2);
  if (cam.antialiased) {
    T r = st.det_raw / det;
    if (r > 0) {
      T k = v_comp * T(0.5) / sqrt(r);
      T a0 = a - T(cam.eps2d), c0 = c - T(cam.eps2d);
      ga += k * (c0 * id - st.det_raw * c * id2);
      gc += k * (a0 * id - st.det_raw * a * id2);
      gb += k * (-2 * b * id + st.det_raw * 2 * b * id2);
    }
  }
  // cov2d = J C Jᵀ with the symmetric gradient G2 = [[ga, gb/2], [gb/2, gc]]
  T G2[4] = {ga, gb / 2, gb / 2, gc};
  const T* J = st.J;
  T G2J[6];  // G2 J (2x3)
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) G2J[3 * i + j] = G2[2 * i] * J[j] + G2[2 * i + 1] * J[3 + j];
  T gC[9];  // Jᵀ G2 J
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) gC[3 * i + j] = J[i] * G2J[j] + J[3 + i] * G2J[3 + j];
  T gJ[6];  // 2 G2 J C
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      gJ[3 * i + j] = 2 * (G2J[3 * i] * st.C[j] + G2J[3 * i + 1] * st.C[3 + j] + G2J[3 * i + 2] * st.C[6 + j]);
  const T x = st.p[0], y = st.p[1], z = st.p[2];
  const T fx = T(cam.fx), fy = T(cam.fy);
  T gp[3] = {0, 0, 0};
  T z2 = z * z, z3 = z2 * z;
  gp[2] += gJ[0] * (-fx / z2) + gJ[2] * (2 * fx * st.tx / z3) + gJ[4] * (-fy / z2) + gJ[5] * (2 * fy * st.ty / z3);
  T gtx = gJ[2] * (-fx / z2), gty = gJ[5] * (-fy / z2);
  if (st.clamp_x) gp[2] += gtx * (st.tx / z); else gp[0] += gtx;
  if (st.clamp_y) gp[2] += gty * (st.ty / z); else gp[1] += gty;
  gp[0] += v_mean2d[0] * fx / z;
  gp[1] += v_mean2d[1] * fy / z;
  gp[2] += -v_mean2d[0] * fx * x / z2 - v_mean2d[1] * fy * y / z2 + v_depth;
  const double* R = cam.R;
  for (int j = 0; j < 3; ++j) v_mean[j] = T(R[j]) * gp[0] + T(R[3 + j]) * gp[1] + T(R[6 + j]) * gp[2];
  // C = R Σ Rᵀ → dΣ = Rᵀ gC R
  T gCR[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) gCR[3 * i + j] = gC[3 * i] * T(R[j]) + gC[3 * i + 1] * T(R[3 + j]) + gC[3 * i + 2] * T(R[6 + j]);
  T gS[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) gS[3 * i + j] = T(R[i]) * gCR[j] + T(R[3 + i]) * gCR[3 + j] + T(R[6 + i]) * gCR[6 + j];
  if (v_view) {
    // p = R m + t; C = R Σ Rᵀ → dR = gp mᵀ + 2 gC R Σ
    T RS[9];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) RS[3 * i + j] = T(R[3 * i]) * st.Sigma[j] + T(R[3 * i + 1]) * st.Sigma[3 + j] + T(R[3 * i + 2]) * st.Sigma[6 + j];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j)
        v_view[3 * i + j] += gp[i] * mean[j] + 2 * (gC[3 * i] * RS[j] + gC[3 * i + 1] * RS[3 + j] + gC[3 * i + 2] * RS[6 + j]);
    for (int i = 0; i < 3; ++i) v_view[9 + i] += gp[i];
  }
  // Σ = M Mᵀ, M = Rq diag(s) → dM = 2 gS M
  T M[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) M[3 * i + j] = st.Rq.m[3 * i + j] * st.s[j];
  T gM[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) gM[3 * i + j] = 2 * (gS[3 * i] * M[j] + gS[3 * i + 1] * M[3 + j] + gS[3 * i + 2] * M[6 + j]);
  T gR[9];
  for (int j = 0; j < 3; ++j) {
    T gs = 0;
    for (int i = 0; i < 3; ++i) {
      gR[3 * i + j] = gM[3 * i + j] * st.s[j];
      gs += gM[3 * i + j] * st.Rq.m[3 * i + j];
    }
    v_log_scale[j] = gs * st.s[j];
  }
  quat_to_rot_vjp(quat, gR, v_quat);
}

// ---------------------------------------------------------------- spherical harmonics
constexpr double SH_C0 = 0.28209479177387814;
constexpr double SH_C1 = 0.4886025119029199;
constexpr double SH_C2[5] = {1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
                             0.5462742152960396};
constexpr double SH_C3[7] = {-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
                             -0.4570457994644658, 1.445305721320277, -0.5900435899266435};

// Basis values (16) and, when grad != nullptr, their derivatives d basis_k / d(x, y, z) (16x3).
template <typename T> HD void sh_basis(int degree, T x, T y, T z, T basis[16], T grad[48]) {
  basis[0] = T(SH_C0);
  if (grad) for (int k = 0; k < 48; ++k) grad[k] = 0;
  if (degree < 1) return;
  const T c1 = T(SH_C1);
  basis[1] = -c1 * y; basis[2] = c1 * z; basis[3] = -c1 * x;
  if (grad) { grad[3 * 1 + 1] = -c1; grad[3 * 2 + 2] = c1; grad[3 * 3 + 0] = -c1; }
  if (degree < 2) return;
  T xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
  T c20 = T(SH_C2[0]), c21 = T(SH_C2[1]), c22 = T(SH_C2[2]), c23 = T(SH_C2[3]), c24 = T(SH_C2[4]);
  basis[4] = c20 * xy; basis[5] = c21 * yz; basis[6] = c22 * (2 * zz - xx - yy); basis[7] = c23 * xz;
  basis[8] = c24 * (xx - yy);
  if (grad) {
    grad[12] = c20 * y; grad[13] = c20 * x;
    grad[16] = c21 * z; grad[17] = c21 * y;
    grad[18] = -2 * c22 * x; grad[19] = -2 * c22 * y; grad[20] = 4 * c22 * z;
    grad[21] = c23 * z; grad[23] = c23 * x;
    grad[24] = 2 * c24 * x; grad[25] = -2 * c24 * y;
  }
  if (degree < 3) return;
  T c30 = T(SH_C3[0]), c31 = T(SH_C3[1]), c32 = T(SH_C3[2]), c33 = T(SH_C3[3]), c34 = T(SH_C3[4]),
    c35 = T(SH_C3[5]), c36 = T(SH_C3[6]);
  basis[9] = c30 * y * (3 * xx - yy);
  basis[10] = c31 * xy * z;
  basis[11] = c32 * y * (4 * zz - xx - yy);
  basis[12] = c33 * z * (2 * zz - 3 * xx - 3 * yy);
  basis[13] = c34 * x * (4 * zz - xx - yy);
  basis[14] = c35 * z * (xx - yy);
  basis[15] = c36 * x * (xx - 3 * yy);
  if (grad) {
    grad[27] = 6 * c30 * xy; grad[28] = c30 * (3 * xx - 3 * yy);
    grad[30] = c31 * yz; grad[31] = c31 * xz; grad[32] = c31 * xy;
    grad[33] = -2 * c32 * xy; grad[34] = c32 * (4 * zz - xx - 3 * yy); grad[35] = 8 * c32 * yz;
    grad[36] = -6 * c33 * xz; grad[37] = -6 * c33 * yz; grad[38] = c33 * (6 * zz - 3 * xx - 3 * yy);
    grad[39] = c34 * (4 * zz - 3 * xx - yy); grad[40] = -2 * c34 * xy; grad[41] = 8 * c34 * xz;
    grad[42] = 2 * c35 * xz; grad[43] = -2 * c35 * yz; grad[44] = c35 * (xx - yy);
    grad[45] = c36 * (3 * xx - 3 * yy); grad[46] = -6 * c36 * xy;
  }
}

// colour = max(Σ basis_k coeff_k + 0.5, 0). coeffs: K x 3 (K ≥ (degree+1)²).
template <typename T>
HD void sh_color_one(int degree, int K, const T* coeffs, const T mean[3], const T campos[3], T color[3]) {
  T d[3] = {mean[0] - campos[0], mean[1] - campos[1], mean[2] - campos[2]};
  T n = sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
  T basis[16];
  sh_basis<T>(degree, d[0] / n, d[1] / n, d[2] / n, basis, nullptr);
  int nb = (degree + 1) * (degree + 1);
  for (int ch = 0; ch < 3; ++ch) {
    T acc = 0;
    for (int k = 0; k < nb; ++k) acc += basis[k] * coeffs[3 * k + ch];
    acc += T(0.5);
    color[ch] = acc > 0 ? acc : T(0);
  }
  (void)K;
}

// Gradient: v_coeffs (K x 3, overwritten for k < (degree+1)², zero beyond) and v_mean (3).
template <typename T>
HD void sh_color_one_vjp(int degree, int K, const T* coeffs, const T mean[3], const T campos[3], const T v_color[3],
                         T* v_coeffs, T v_mean[3]) {
  T d[3] = {mean[0] - campos[0], mean[1] - campos[1], mean[2] - campos[2]};
  T n = sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
  T u[3] = {d[0] / n, d[1] / n, d[2] / n};
  T basis[16], grad[48];
  sh_basis<T>(degree, u[0], u[1], u[2], basis, grad);
  int nb = (degree + 1) * (degree + 1);
  T vc[3];
  for (int ch = 0; ch < 3; ++ch) {
    T acc = T(0.5);
    for (int k = 0; k < nb; ++k) acc += basis[k] * coeffs[3 * k + ch];
    vc[ch] = acc >= 0 ? v_color[ch] : T(0);
  }
  T vu[3] = {0, 0, 0};
  for (int k = 0; k < K; ++k)
    for (int ch = 0; ch < 3; ++ch) {
      if (k < nb) {
        v_coeffs[3 * k + ch] = basis[k] * vc[ch];
        for (int a = 0; a < 3; ++a) vu[a] += grad[3 * k + a] * coeffs[3 * k + ch] * vc[ch];
      } else {
        v_coeffs[3 * k + ch] = 0;
      }
    }
  T dot = vu[0] * u[0] + vu[1] * u[1] + vu[2] * u[2];
  for (int a = 0; a < 3; ++a) v_mean[a] = (vu[a] - u[a] * dot) / n;
}

// ---------------------------------------------------------------- tiles
// Tiles a Gaussian touches, [x0, x1) x [y0, y1); empty for radius 0 (matches tile_rects).
template <typename T>
HD void tile_rect(const T mean2d[2], int32_t radius, int tiles_x, int tiles_y, int rect[4]) {
  if (radius <= 0) { rect[0] = rect[1] = rect[2] = rect[3] = 0; return; }
  T r = T(radius);
  rect[0] = static_cast<int>(clampv<T>(floor((mean2d[0] - r) / T(TILE)), T(0), T(tiles_x)));
  rect[1] = static_cast<int>(clampv<T>(floor((mean2d[1] - r) / T(TILE)), T(0), T(tiles_y)));
  rect[2] = static_cast<int>(clampv<T>(ceil((mean2d[0] + r) / T(TILE)), T(0), T(tiles_x)));
  rect[3] = static_cast<int>(clampv<T>(ceil((mean2d[1] + r) / T(TILE)), T(0), T(tiles_y)));
}

// ---------------------------------------------------------------- per-pixel compositing
// Written for a scalar (CUDA: one pixel per thread) or a GCC vector of pixels (CPU SIMD);
// the expressions are the same for both.
template <typename V, typename S> HD V pixel_sigma(V dx, V dy, S ca, S cb, S cc) {
  return S(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy;
}

// Box around a Gaussian outside which α < ALPHA_MIN for sure: σ ≥ ½dy²/Σyy for every dx
// (and ½dx²/Σxx for every dy), so |d| ≤ sqrt(2 ln(255·opacity) Σ) bounds the pixels that
// can blend. Adds a one-pixel margin for rounding. Returns false when nothing can blend.
template <typename T> HD bool alpha_box(T ca, T cb, T cc, T opacity, T& rx, T& ry) {
  T lim = log(opacity / T(ALPHA_MIN));
  if (!(lim > 0)) return false;
  T det = ca * cc - cb * cb;
  rx = sqrt(T(2) * lim * cc / det) + T(1);
  ry = sqrt(T(2) * lim * ca / det) + T(1);
  return true;
}

}  // namespace splat

#if defined(SPLAT_CPU_SIMD) && !defined(__CUDACC__)
namespace splat {
// Vectors of pixels for the CPU path (GCC/Clang vector extensions; 512-bit with AVX-512).
template <typename T> struct Vec;
#if defined(__AVX512F__)
template <> struct Vec<float> {
  typedef float V __attribute__((vector_size(64)));
  typedef int32_t I __attribute__((vector_size(64)));
  static constexpr int N = 16;
};
#else
template <> struct Vec<float> {
  typedef float V __attribute__((vector_size(32)));
  typedef int32_t I __attribute__((vector_size(32)));
  static constexpr int N = 8;
};
#endif
template <> struct Vec<double> {
  typedef double V __attribute__((vector_size(32)));
  typedef int64_t I __attribute__((vector_size(32)));
  static constexpr int N = 4;
};

inline Vec<float>::V vexp(Vec<float>::V x) {  // fast_exp, lane-wise
  using V = Vec<float>::V;
  using I = Vec<float>::I;
  const V lo = V{} - 87.0f, hi = V{} + 88.0f, half = V{} + 0.5f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  V t = x * 1.44269504088896341f;
  I ni = __builtin_convertvector(t + (t >= 0.0f ? half : -half), I);
  V n = __builtin_convertvector(ni, V);
  I bits = (ni + 127) << 23;  // 2^n
  return exp_poly(x - n * 0.693359375f + n * 2.12194440e-4f) * reinterpret_cast<V&>(bits);
}
inline Vec<double>::V vexp(Vec<double>::V x) {  // float64 is for tests: the library exp
  for (int i = 0; i < 4; ++i) x[i] = std::exp(x[i]);
  return x;
}
}  // namespace splat
#endif
