// Mesh rasterization math, one source for the CPU and CUDA paths (kernels/mesh_reference.py is the
// spec). Conventions follow nvdiffrast so that its users recognise them:
//   - vertices in clip space (x, y, z, w); pixel (X, Y) has its centre at NDC ((2X+1)/W − 1, (2Y+1)/H − 1);
//   - rast = (u, v, z/w, triangle id + 1), the point being u·v0 + v·v1 + (1 − u − v)·v2 (0 = no triangle);
//   - rast_db = (du/dX, du/dY, dv/dX, dv/dY) in pixels.
// Barycentrics and depth come from homogeneous coordinates (Olano & Greer): e = adj(M)·(px, py, 1) with
// M = [v0 v1 v2] over (x, y, w), so triangles crossing w = 0 need no geometric clipping; the near and far
// planes clip per pixel (−1 ≤ z/w ≤ 1). Coverage is decided exactly, as GPUs do: vertices in front of the
// camera are snapped to 1/256 pixel and the edge functions evaluated in 64-bit integers, where a shared
// edge's function is the exact negation in its two triangles, and a tie-break (the sample nudged by
// (ε, ε²)) gives a pixel on an edge or a vertex to exactly one triangle: no cracks, no double coverage.
// Triangles with a vertex at w ≤ 0 (or projecting absurdly far) use the floating-point homogeneous test
// instead (the kernels are built without FMA contraction, so it is the same on every path).
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define MESH_HD __host__ __device__ inline
#else
#define MESH_HD inline
#endif

namespace mesh {

// A triangle set up for rasterization: edge rows A[i] (e_i = A[i]·(px, py, 1)), det(M), z and w.
constexpr int64_t SUBPIXEL = 256;  // a power of two: the bounds below divide by shifting

template <typename S>
struct Tri {
  S A[3][3];
  S det;
  S z[3], w[3];
  bool exact;              // coverage by the snapped integer edge functions below
  int64_t ox[3], oy[3];    // edge i runs from vertex i+1 by (ex, ey), in 1/256 pixel
  int64_t ex[3], ey[3];
  int64_t sign;            // the snapped triangle's orientation (±1)
};

template <typename S>
MESH_HD void setup_triangle(const S* p0, const S* p1, const S* p2, Tri<S>& t) {
  const S* v[3] = {p0, p1, p2};
  for (int i = 0; i < 3; ++i) {
    const S* a = v[(i + 1) % 3];
    const S* b = v[(i + 2) % 3];
    // cross((ax, ay, aw), (bx, by, bw))
    t.A[i][0] = a[1] * b[3] - a[3] * b[1];
    t.A[i][1] = a[3] * b[0] - a[0] * b[3];
    t.A[i][2] = a[0] * b[1] - a[1] * b[0];
    t.z[i] = v[i][2];
    t.w[i] = v[i][3];
  }
  t.det = p0[0] * t.A[0][0] + p0[1] * t.A[0][1] + p0[3] * t.A[0][2];
}

MESH_HD double ndc(int64_t X, int64_t W) { return double(2 * X + 1) / double(W) - 1.0; }

// Snap a triangle in front of the camera to 1/256 pixel (round half to even, as torch.round): exact
// coverage becomes possible. A vertex further than 2^15 image sizes away keeps the float test.
template <typename S>
MESH_HD void snap_triangle(const S* p0, const S* p1, const S* p2, int64_t W, int64_t H, Tri<S>& t) {
  const S* v[3] = {p0, p1, p2};
  int64_t X[3], Y[3];
  t.exact = false;
  for (int k = 0; k < 3; ++k) {
    if (!(v[k][3] > S(0))) return;
    const S fx = (v[k][0] / v[k][3] + S(1)) * S(W * (SUBPIXEL / 2));
    const S fy = (v[k][1] / v[k][3] + S(1)) * S(H * (SUBPIXEL / 2));
    if (!(fx > S(-16777216) && fx < S(16777216) && fy > S(-16777216) && fy < S(16777216))) return;
    X[k] = llrint(double(fx));
    Y[k] = llrint(double(fy));
  }
  for (int i = 0; i < 3; ++i) {
    const int a = (i + 1) % 3, b = (i + 2) % 3;
    t.ox[i] = X[a]; t.oy[i] = Y[a];
    t.ex[i] = X[b] - X[a]; t.ey[i] = Y[b] - Y[a];
  }
  const int64_t area = t.ex[0] * (Y[0] - t.oy[0]) - t.ey[0] * (X[0] - t.ox[0]);
  t.sign = area > 0 ? 1 : -1;
  t.exact = true;
  if (area == 0) t.det = S(0);  // vanishes when snapped: draws nothing, as on a GPU
}

// The snapped edge function i at pixel (X, Y), times the orientation, and its tie-break.
template <typename S>
MESH_HD bool inside_exact(const Tri<S>& t, int i, int64_t X, int64_t Y) {
  const int64_t px = X * SUBPIXEL + SUBPIXEL / 2, py = Y * SUBPIXEL + SUBPIXEL / 2;
  const int64_t e = (t.ex[i] * (py - t.oy[i]) - t.ey[i] * (px - t.ox[i])) * t.sign;
  const int64_t a = -t.ey[i] * t.sign, b = t.ex[i] * t.sign;
  return e > 0 || (e == 0 && (a > 0 || (a == 0 && b > 0)));
}

template <typename S>
MESH_HD bool finite(S x) {
  return x - x == S(0);  // false for ±inf and NaN
}

// Set a triangle up and bound the pixels it may cover: box = (x0, y0, x1, y1), inclusive; x0 > x1 when
// it draws nothing (non-finite, degenerate, or wholly outside one clip plane). A triangle with a vertex
// at w ≤ 0 has an unbounded projection and gets the whole image (its coverage is exact all the same).
template <typename S>
MESH_HD void setup_and_bound(const S* p0, const S* p1, const S* p2, int64_t W, int64_t H, Tri<S>& t, int32_t box[4]) {
  box[0] = 1; box[1] = 1; box[2] = 0; box[3] = 0;
  const S* p[3] = {p0, p1, p2};
  bool ok = true, all_front = true;
  int out[6] = {0, 0, 0, 0, 0, 0};
  for (int k = 0; k < 3; ++k) {
    for (int d = 0; d < 4; ++d) ok = ok && finite(p[k][d]);
    const S x = p[k][0], y = p[k][1], z = p[k][2], w = p[k][3];
    out[0] += x > w; out[1] += x < -w; out[2] += y > w; out[3] += y < -w; out[4] += z > w; out[5] += z < -w;
    all_front = all_front && w > S(0);
  }
  for (int i = 0; i < 6; ++i) ok = ok && out[i] < 3;
  if (!ok) return;
  setup_triangle(p0, p1, p2, t);
  snap_triangle(p0, p1, p2, W, H, t);
  if (!(t.det != S(0))) return;
  int64_t x0 = 0, y0 = 0, x1 = W - 1, y1 = H - 1;
  if (t.exact) {  // the pixel centres (X·256 + 128) inside the snapped box, exactly
    int64_t lo[2] = {t.ox[0], t.oy[0]}, hi[2] = {t.ox[0], t.oy[0]};
    for (int i = 1; i < 3; ++i) {
      lo[0] = t.ox[i] < lo[0] ? t.ox[i] : lo[0]; hi[0] = t.ox[i] > hi[0] ? t.ox[i] : hi[0];
      lo[1] = t.oy[i] < lo[1] ? t.oy[i] : lo[1]; hi[1] = t.oy[i] > hi[1] ? t.oy[i] : hi[1];
    }
    x0 = -((SUBPIXEL / 2 - lo[0]) >> 8); x1 = (hi[0] - SUBPIXEL / 2) >> 8;  // ceil / floor of (c − 128)/256
    y0 = -((SUBPIXEL / 2 - lo[1]) >> 8); y1 = (hi[1] - SUBPIXEL / 2) >> 8;
    x0 = x0 < 0 ? 0 : x0; y0 = y0 < 0 ? 0 : y0;
    x1 = x1 > W - 1 ? W - 1 : x1; y1 = y1 > H - 1 ? H - 1 : y1;
    if (x0 > x1 || y0 > y1) return;
  } else if (all_front) {
    S lo[2] = {S(1e30), S(1e30)}, hi[2] = {S(-1e30), S(-1e30)};
    for (int k = 0; k < 3; ++k)
      for (int d = 0; d < 2; ++d) {
        const S c = p[k][d] / p[k][3];
        lo[d] = c < lo[d] ? c : lo[d];
        hi[d] = c > hi[d] ? c : hi[d];
      }
    // pixel X is at NDC (2X+1)/W − 1; one pixel of margin against rounding; |NDC| ≤ 2 keeps it in range
    const S n[2] = {S(W), S(H)};
    int64_t first[2], last[2];
    for (int d = 0; d < 2; ++d) {
      const S l = lo[d] < S(-2) ? S(-2) : lo[d], h = hi[d] > S(2) ? S(2) : hi[d];
      first[d] = int64_t(floor(double((l + S(1)) * n[d] * S(0.5) - S(0.5)))) - 1;
      last[d] = int64_t(ceil(double((h + S(1)) * n[d] * S(0.5) - S(0.5)))) + 1;
    }
    x0 = first[0] < 0 ? 0 : first[0];
    y0 = first[1] < 0 ? 0 : first[1];
    x1 = last[0] > W - 1 ? W - 1 : last[0];
    y1 = last[1] > H - 1 ? H - 1 : last[1];
    if (x0 > x1 || y0 > y1) return;
  }
  box[0] = int32_t(x0); box[1] = int32_t(y0); box[2] = int32_t(x1); box[3] = int32_t(y1);
}

template <typename S>
MESH_HD S edge_value(const S A[3], S px, S py) {
  return (A[0] * px + A[1] * py) + A[2];
}

// Whether a pixel with edge value e (already multiplied by sign(det)) is on the inside of an edge whose
// row, times sign(det), is (a, b, ·): strictly inside, or on the edge with the tie going to one side.
template <typename S>
MESH_HD bool inside_edge(S e, S a, S b) {
  return e > S(0) || (e == S(0) && (a > S(0) || (a == S(0) && b > S(0))));
}

// Coverage of the pixel at (px, py): true with the edge values e[3] and depth z/w when the triangle
// covers it within the near and far planes.
template <typename S>
MESH_HD bool cover(const Tri<S>& t, int64_t X, int64_t Y, S px, S py, S e[3], S& depth) {
  if (!(t.det != S(0))) return false;  // degenerate (or NaN)
  const S sg = t.det > S(0) ? S(1) : S(-1);
  for (int i = 0; i < 3; ++i) {
    e[i] = edge_value(t.A[i], px, py);
    if (t.exact ? !inside_exact(t, i, X, Y) : !inside_edge(e[i] * sg, t.A[i][0] * sg, t.A[i][1] * sg)) return false;
  }
  const S ze = (e[0] * t.z[0] + e[1] * t.z[1]) + e[2] * t.z[2];
  const S we = (e[0] * t.w[0] + e[1] * t.w[1]) + e[2] * t.w[2];
  if (!(we != S(0))) return false;
  depth = ze / we;
  return depth >= S(-1) && depth <= S(1);
}

// Barycentrics (u, v) from edge values, and their pixel derivatives (du/dX, du/dY, dv/dX, dv/dY).
template <typename S>
MESH_HD void barycentrics(const Tri<S>& t, const S e[3], S& u, S& v) {
  const S s = (e[0] + e[1]) + e[2];
  u = e[0] / s;
  v = e[1] / s;
}

template <typename S>
MESH_HD void barycentric_derivatives(const Tri<S>& t, const S e[3], S sx, S sy, S db[4]) {
  // sx = 2/W, sy = 2/H: NDC per pixel
  const S s = (e[0] + e[1]) + e[2];
  const S ax = (t.A[0][0] + t.A[1][0]) + t.A[2][0];
  const S ay = (t.A[0][1] + t.A[1][1]) + t.A[2][1];
  const S s2 = s * s;
  db[0] = (t.A[0][0] * s - e[0] * ax) / s2 * sx;
  db[1] = (t.A[0][1] * s - e[0] * ay) / s2 * sy;
  db[2] = (t.A[1][0] * s - e[1] * ax) / s2 * sx;
  db[3] = (t.A[1][1] * s - e[1] * ay) / s2 * sy;
}

// Gradient of (u, v) at one pixel to the triangle's clip (x, y, w): b = q/Σq with q = M⁻¹p, so
// ∂L/∂M = −M⁻ᵀ g_q qᵀ with g_q = (g_b − b·g_b)/Σq. g_vert[c][0..2] = ∂L/∂(x, y, w) of vertex c.
template <typename S>
MESH_HD void barycentrics_backward(const Tri<S>& t, S px, S py, S gu, S gv, S g_vert[3][3]) {
  S q[3];
  for (int i = 0; i < 3; ++i) q[i] = edge_value(t.A[i], px, py) / t.det;
  const S s = (q[0] + q[1]) + q[2];
  const S b0 = q[0] / s, b1 = q[1] / s;
  const S dot = b0 * gu + b1 * gv;
  const S gq[3] = {(gu - dot) / s, (gv - dot) / s, (S(0) - dot) / s};
  S r[3];
  for (int k = 0; k < 3; ++k) r[k] = ((gq[0] * t.A[0][k] + gq[1] * t.A[1][k]) + gq[2] * t.A[2][k]) / t.det;
  for (int c = 0; c < 3; ++c)
    for (int k = 0; k < 3; ++k) g_vert[c][k] = -q[c] * r[k];
}

// ---- texture sampling ----

struct MipLevel {
  int64_t width, height, offset;  // offset: first texel in the flat buffer of all levels
};

MESH_HD int64_t wrap_index(int64_t i, int64_t n, int boundary) {
  if (i >= 0 && i < n) return i;  // the common case needs no division
  if (boundary == 0) {
    i %= n;
    return i < 0 ? i + n : i;
  }
  return i < 0 ? 0 : (i >= n ? n - 1 : i);
}

// Bilinear taps of (u, v) on a level: 4 flat texel indices and weights, and the weights' derivatives
// with respect to u and v. Texel centres are at (i + 0.5)/width. Nearest: one tap (the rest weigh 0).
template <typename S>
MESH_HD void taps(const MipLevel& lv, S u, S v, bool nearest, int boundary, int64_t idx[4], S w[4], S dwu[4],
                  S dwv[4]) {
  if (nearest) {
    const int64_t x = wrap_index(int64_t(floor(u * S(lv.width))), lv.width, boundary);
    const int64_t y = wrap_index(int64_t(floor(v * S(lv.height))), lv.height, boundary);
    for (int k = 0; k < 4; ++k) {
      idx[k] = lv.offset + y * lv.width + x;
      w[k] = k == 0 ? S(1) : S(0);
      dwu[k] = dwv[k] = S(0);
    }
    return;
  }
  const S x = u * S(lv.width) - S(0.5), y = v * S(lv.height) - S(0.5);
  const S x0f = floor(x), y0f = floor(y);
  const S fx = x - x0f, fy = y - y0f;
  const int64_t x0 = int64_t(x0f), y0 = int64_t(y0f);
  const int64_t xs[2] = {wrap_index(x0, lv.width, boundary), wrap_index(x0 + 1, lv.width, boundary)};
  const int64_t ys[2] = {wrap_index(y0, lv.height, boundary), wrap_index(y0 + 1, lv.height, boundary)};
  const S wx[2] = {S(1) - fx, fx}, wy[2] = {S(1) - fy, fy};
  const S dx[2] = {-S(lv.width), S(lv.width)}, dy[2] = {-S(lv.height), S(lv.height)};
  for (int k = 0; k < 4; ++k) {
    const int i = k & 1, j = k >> 1;
    idx[k] = lv.offset + ys[j] * lv.width + xs[i];
    w[k] = wx[i] * wy[j];
    dwu[k] = dx[i] * wy[j];
    dwv[k] = wx[i] * dy[j];
  }
}

// The mip level of a pixel from its uv derivatives (du/dX, du/dY, dv/dX, dv/dY), isotropic as in
// nvdiffrast: lod = ½·log2(max(|∂uv/∂X|², |∂uv/∂Y|²)) in texels of level 0, clamped to the pyramid.
template <typename S>
MESH_HD void mip_select(const S* da, const MipLevel& base, int levels, int& l0, int& l1, S& frac) {
  const S ax = da[0] * S(base.width), ay = da[1] * S(base.width);
  const S bx = da[2] * S(base.height), by = da[3] * S(base.height);
  const S lx = ax * ax + bx * bx, ly = ay * ay + by * by;
  const S m = lx > ly ? lx : ly;
  S lod = m > S(0) ? S(0.5) * log2(m) : S(0);
  if (!(lod > S(0))) lod = S(0);  // magnification and NaN
  const S top = S(levels - 1);
  if (lod >= top) {
    l0 = l1 = levels - 1;
    frac = S(0);
    return;
  }
  l0 = int(floor(lod));
  l1 = l0 + 1;
  frac = lod - S(l0);
}

// ---- silhouette antialiasing ----

// Pixel-space position of a clip vertex: pixel (X, Y) has its centre at (X, Y).
template <typename S>
MESH_HD void to_pixels(const S* p, int64_t W, int64_t H, S& x, S& y) {
  x = (p[0] / p[3] + S(1)) * S(W) * S(0.5) - S(0.5);
  y = (p[1] / p[3] + S(1)) * S(H) * S(0.5) - S(0.5);
}

template <typename S>
MESH_HD S screen_area(const S* p0, const S* p1, const S* p2, int64_t W, int64_t H) {
  S x0, y0, x1, y1, x2, y2;
  to_pixels(p0, W, H, x0, y0);
  to_pixels(p1, W, H, x1, y1);
  to_pixels(p2, W, H, x2, y2);
  return (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0);
}

// Which edges of triangle f are silhouettes (bit k: the edge from corner k to k+1): an edge with no
// neighbour, or whose neighbour faces the other way on screen. Triangles with a vertex at w ≤ 0 get no
// antialiasing (0), and neither do neighbours with one. Computed once per face before the pixels ask.
template <typename S>
MESH_HD uint8_t face_silhouettes(const S* pos, const int32_t* tri, const int32_t* nbr, int64_t f, int64_t W,
                                 int64_t H) {
  const S* p[3] = {pos + 4 * int64_t(tri[3 * f]), pos + 4 * int64_t(tri[3 * f + 1]), pos + 4 * int64_t(tri[3 * f + 2])};
  for (int k = 0; k < 3; ++k)
    if (!(p[k][3] > S(0))) return 0;
  const S area = screen_area(p[0], p[1], p[2], W, H);
  uint8_t bits = 0;
  for (int k = 0; k < 3; ++k) {
    const int64_t n = int64_t(nbr[3 * f + k]);
    if (n >= 0) {
      const S* q[3] = {pos + 4 * int64_t(tri[3 * n]), pos + 4 * int64_t(tri[3 * n + 1]), pos + 4 * int64_t(tri[3 * n + 2])};
      if (!(q[0][3] > S(0) && q[1][3] > S(0) && q[2][3] > S(0))) continue;
      const S na = screen_area(q[0], q[1], q[2], W, H);
      if ((na > S(0)) == (area > S(0))) continue;  // both face the same way: an inner edge
    }
    bits |= uint8_t(1u << k);
  }
  return bits;
}

// The silhouette edge of triangle f (seen at pixel a) that the segment from pixel a's centre to pixel
// b's centre crosses first: returns the edge (0..2, from vertex k to k+1) or −1, and the crossing t in
// (0, 1); `sil` holds each face's silhouette edges (face_silhouettes).
template <typename S>
MESH_HD int silhouette_crossing(const S* pos, const int32_t* tri, const uint8_t* sil, int64_t f, int64_t W, int64_t H,
                                S ax, S ay, S bx, S by, S& t_out) {
  const uint8_t bits = sil[f];
  if (!bits) return -1;
  const S* p[3] = {pos + 4 * int64_t(tri[3 * f]), pos + 4 * int64_t(tri[3 * f + 1]), pos + 4 * int64_t(tri[3 * f + 2])};
  int best = -1;
  S best_t = S(2);
  for (int k = 0; k < 3; ++k) {
    if (!(bits & (1u << k))) continue;
    S x0, y0, x1, y1;
    to_pixels(p[k], W, H, x0, y0);
    to_pixels(p[(k + 1) % 3], W, H, x1, y1);
    const S ea = (x1 - x0) * (ay - y0) - (y1 - y0) * (ax - x0);
    const S eb = (x1 - x0) * (by - y0) - (y1 - y0) * (bx - x0);
    if (!((ea > S(0) && eb < S(0)) || (ea < S(0) && eb > S(0)))) continue;
    const S t = ea / (ea - eb);
    // the crossing must lie on the edge itself, not on its line
    const S cx = ax + t * (bx - ax), cy = ay + t * (by - ay);
    const S ex = x1 - x0, ey = y1 - y0, len2 = ex * ex + ey * ey;
    const S s = ((cx - x0) * ex + (cy - y0) * ey) / len2;
    if (!(s >= S(0) && s <= S(1))) continue;
    if (t < best_t) {
      best_t = t;
      best = k;
    }
  }
  t_out = best_t;
  return best;
}

// Gradient of the crossing t to the clip (x, y, w) of the edge's two vertices.
template <typename S>
MESH_HD void crossing_backward(const S* p0, const S* p1, int64_t W, int64_t H, S ax, S ay, S bx, S by, S gt,
                               S g0[3], S g1[3]) {
  S x0, y0, x1, y1;
  to_pixels(p0, W, H, x0, y0);
  to_pixels(p1, W, H, x1, y1);
  const S ea = (x1 - x0) * (ay - y0) - (y1 - y0) * (ax - x0);
  const S eb = (x1 - x0) * (by - y0) - (y1 - y0) * (bx - x0);
  const S d = ea - eb;
  const S gea = gt * (-eb) / (d * d), geb = gt * ea / (d * d);
  // ∂e/∂(x0, y0, x1, y1) for e at point (px, py): (y1 − py, px − x1, py − y0, x0 − px)
  const S gx0 = gea * (y1 - ay) + geb * (y1 - by);
  const S gy0 = gea * (ax - x1) + geb * (bx - x1);
  const S gx1 = gea * (ay - y0) + geb * (by - y0);
  const S gy1 = gea * (x0 - ax) + geb * (x0 - bx);
  const S hw = S(W) * S(0.5), hh = S(H) * S(0.5);
  g0[0] = gx0 * hw / p0[3];
  g0[1] = gy0 * hh / p0[3];
  g0[2] = -(gx0 * hw * p0[0] + gy0 * hh * p0[1]) / (p0[3] * p0[3]);
  g1[0] = gx1 * hw / p1[3];
  g1[1] = gy1 * hh / p1[3];
  g1[2] = -(gx1 * hw * p1[0] + gy1 * hh * p1[1]) / (p1[3] * p1[3]);
}

// One pair of neighbouring pixels a, b (b right of or below a): which pixel is blended toward the
// other and by how much. Returns false when nothing happens; else `target` (0: a, 1: b), alpha, and
// what the gradient needs: the triangle and edge, the crossing t, and the sign of dα/dt.
template <typename S>
struct PairBlend {
  int target;
  S alpha;
  int64_t face;
  int edge;
  S t;
  S dalpha_dt;
  S ax, ay, bx, by;  // the segment, from the occluding pixel to the other
};

template <typename S>
MESH_HD bool pair_blend(const S* rast_a, const S* rast_b, const S* pos, const int32_t* tri, const uint8_t* sil, int64_t W,
                        int64_t H, int64_t xa, int64_t ya, int64_t xb, int64_t yb, PairBlend<S>& out) {
  const int64_t fa = int64_t(rast_a[3]), fb = int64_t(rast_b[3]);
  if (fa == fb) return false;
  bool a_front;
  if (fa == 0) a_front = false;
  else if (fb == 0) a_front = true;
  else a_front = !(rast_b[2] < rast_a[2]);
  const int64_t f = (a_front ? fa : fb) - 1;
  out.ax = S(a_front ? xa : xb); out.ay = S(a_front ? ya : yb);
  out.bx = S(a_front ? xb : xa); out.by = S(a_front ? yb : ya);
  S t;
  const int k = silhouette_crossing(pos, tri, sil, f, W, H, out.ax, out.ay, out.bx, out.by, t);
  if (k < 0) return false;
  out.face = f;
  out.edge = k;
  out.t = t;
  if (t >= S(0.5)) {  // the occluder reaches into the other pixel: it takes t − ½ of the occluder's colour
    out.target = a_front ? 1 : 0;
    out.alpha = t - S(0.5);
    out.dalpha_dt = S(1);
  } else {  // the occluder does not cover its own pixel's centre region fully
    out.target = a_front ? 0 : 1;
    out.alpha = S(0.5) - t;
    out.dalpha_dt = S(-1);
  }
  return true;
}

// ---- per-pixel ops, shared by the CPU loops and the CUDA threads ----

// Attributes at one pixel (C channels; 0 off the mesh) and, given db, their pixel derivatives (2C).
template <typename S>
MESH_HD void interpolate_pixel(const S* r, const S* attr, const int32_t* tri, int64_t C, const S* db, S* out,
                               S* out_da) {
  const int64_t f = int64_t(r[3]) - 1;
  if (f < 0) {
    for (int64_t c = 0; c < C; ++c) out[c] = S(0);
    if (out_da)
      for (int64_t c = 0; c < 2 * C; ++c) out_da[c] = S(0);
    return;
  }
  const S* a0 = attr + int64_t(tri[3 * f]) * C;
  const S* a1 = attr + int64_t(tri[3 * f + 1]) * C;
  const S* a2 = attr + int64_t(tri[3 * f + 2]) * C;
  const S u = r[0], v = r[1], w = S(1) - u - v;
  for (int64_t c = 0; c < C; ++c) out[c] = (u * a0[c] + v * a1[c]) + w * a2[c];
  if (out_da)
    for (int64_t c = 0; c < C; ++c) {
      const S p = a0[c] - a2[c], s = a1[c] - a2[c];
      out_da[2 * c] = p * db[0] + s * db[2];
      out_da[2 * c + 1] = p * db[1] + s * db[3];
    }
}

// Gradient of one pixel's attributes to its (u, v).
template <typename S>
MESH_HD void interpolate_pixel_backward(const S* r, const S* attr, const int32_t* tri, int64_t C, const S* g, S& gu,
                                        S& gv) {
  gu = gv = S(0);
  const int64_t f = int64_t(r[3]) - 1;
  if (f < 0) return;
  const S* a0 = attr + int64_t(tri[3 * f]) * C;
  const S* a1 = attr + int64_t(tri[3 * f + 1]) * C;
  const S* a2 = attr + int64_t(tri[3 * f + 2]) * C;
  for (int64_t c = 0; c < C; ++c) {
    gu += g[c] * (a0[c] - a2[c]);
    gv += g[c] * (a1[c] - a2[c]);
  }
}

// The taps of one pixel: up to two levels × four texels, weights (the level blend folded in) and their
// uv derivatives. Returns how many; a non-finite uv samples nothing.
template <typename S>
MESH_HD int pixel_taps(const MipLevel* lv, int levels, const S* uv, const S* da, int filter, int boundary,
                       int64_t idx[8], S w[8], S dwu[8], S dwv[8]) {
  if (!finite(uv[0]) || !finite(uv[1])) return 0;
  int l0 = 0, l1 = 0;
  S frac = S(0);
  if (filter == 2) mip_select(da, lv[0], levels, l0, l1, frac);
  taps(lv[l0], uv[0], uv[1], filter == 0, boundary, idx, w, dwu, dwv);
  if (l1 == l0) return 4;
  taps(lv[l1], uv[0], uv[1], false, boundary, idx + 4, w + 4, dwu + 4, dwv + 4);
  for (int k = 0; k < 4; ++k) {
    w[k] *= S(1) - frac; dwu[k] *= S(1) - frac; dwv[k] *= S(1) - frac;
    w[k + 4] *= frac; dwu[k + 4] *= frac; dwv[k + 4] *= frac;
  }
  return 8;
}

// The pair of pixel i and its right (dir 0) or lower (dir 1) neighbour j.
// (x, y): pixel i's coordinates.
template <typename S>
MESH_HD bool pair_at(const S* rast, const S* pos, const int32_t* tri, const uint8_t* sil, int64_t W, int64_t H,
                     int64_t i, int64_t x, int64_t y, int dir, int64_t& j, PairBlend<S>& pb) {
  if (dir == 0 ? x + 1 >= W : y + 1 >= H) return false;
  j = dir == 0 ? i + 1 : i + W;
  if (rast[4 * i + 3] == rast[4 * j + 3]) return false;  // the same triangle (or none): nothing to blend
  return pair_blend(rast + 4 * i, rast + 4 * j, pos, tri, sil, W, H, x, y, dir == 0 ? x + 1 : x, dir == 0 ? y : y + 1,
                    pb);
}

// One pixel's antialiased colour: its own plus what each of its pairs blends into it, in a fixed order
// (left, up, right, down), each pair evaluated from the same (first, second) order by both its pixels.
template <typename S>
MESH_HD void antialias_pixel(const S* col, const S* rast, const S* pos, const int32_t* tri, const uint8_t* sil,
                             int64_t W, int64_t H, int64_t C, int64_t i, S* out) {
  for (int64_t c = 0; c < C; ++c) out[c] = col[i * C + c];
  const int64_t x = i % W, y = i / W;
  const int64_t firsts[4] = {x > 0 ? i - 1 : -1, y > 0 ? i - W : -1, i, i};
  const int64_t fx[4] = {x - 1, x, x, x}, fy[4] = {y, y - 1, y, y};
  for (int p = 0; p < 4; ++p) {
    if (firsts[p] < 0) continue;
    int64_t j;
    PairBlend<S> pb;
    if (!pair_at(rast, pos, tri, sil, W, H, firsts[p], fx[p], fy[p], p & 1, j, pb)) continue;
    const int64_t target = pb.target == 0 ? firsts[p] : j, other = pb.target == 0 ? j : firsts[p];
    if (target != i) continue;
    for (int64_t c = 0; c < C; ++c) out[c] += pb.alpha * (col[other * C + c] - col[i * C + c]);
  }
}

// Its backward: the colour gradient of pixel i (gathered from its pairs), and for the pixel's own two
// pairs (right, down) the edge vertices hit (vid, −1 if none) with their (x, y, w) gradients (part).
template <typename S>
MESH_HD void antialias_pixel_backward(const S* col, const S* g_out, const S* rast, const S* pos, const int32_t* tri,
                                      const uint8_t* sil, int64_t W, int64_t H, int64_t C, int64_t i, S* g_col,
                                      int32_t vid[4], S part[12]) {
  for (int64_t c = 0; c < C; ++c) g_col[c] = g_out[i * C + c];
  const int64_t x = i % W, y = i / W;
  const int64_t firsts[4] = {x > 0 ? i - 1 : -1, y > 0 ? i - W : -1, i, i};
  const int64_t fx[4] = {x - 1, x, x, x}, fy[4] = {y, y - 1, y, y};
  for (int p = 0; p < 4; ++p) {
    if (firsts[p] < 0) continue;
    const int dir = p & 1;
    int64_t j;
    PairBlend<S> pb;
    const bool hit = pair_at(rast, pos, tri, sil, W, H, firsts[p], fx[p], fy[p], dir, j, pb);
    if (p >= 2) {
      int32_t* vv = vid + 2 * dir;
      vv[0] = vv[1] = -1;
      if (hit) {
        const int64_t target = pb.target == 0 ? i : j, other = pb.target == 0 ? j : i;
        S ga = S(0);
        for (int64_t c = 0; c < C; ++c) ga += g_out[target * C + c] * (col[other * C + c] - col[target * C + c]);
        const int32_t* t3 = tri + 3 * pb.face;
        vv[0] = t3[pb.edge];
        vv[1] = t3[(pb.edge + 1) % 3];
        S* g = part + 6 * dir;
        crossing_backward(pos + 4 * int64_t(vv[0]), pos + 4 * int64_t(vv[1]), W, H, pb.ax, pb.ay, pb.bx, pb.by,
                          ga * pb.dalpha_dt, g, g + 3);
      }
    }
    if (!hit) continue;
    const int64_t target = pb.target == 0 ? firsts[p] : j, other = pb.target == 0 ? j : firsts[p];
    if (target == i)
      for (int64_t c = 0; c < C; ++c) g_col[c] -= pb.alpha * g_out[i * C + c];
    else if (other == i)
      for (int64_t c = 0; c < C; ++c) g_col[c] += pb.alpha * g_out[target * C + c];
  }
}

}  // namespace mesh

// The same functions, names and signatures in the CPU and CUDA modules: kernels/mesh.py picks one by device.
#define MESH_DEFINE_MODULE(m)                       \
  m.def("set_poison", &splat::set_poison);          \
  m.def("rasterize_fwd", &rasterize_fwd);           \
  m.def("rasterize_bwd", &rasterize_bwd);           \
  m.def("interpolate_fwd", &interpolate_fwd);       \
  m.def("interpolate_bwd", &interpolate_bwd);       \
  m.def("texture_fwd", &texture_fwd);               \
  m.def("texture_bwd", &texture_bwd);               \
  m.def("antialias_fwd", &antialias_fwd);           \
  m.def("antialias_bwd", &antialias_bwd)
