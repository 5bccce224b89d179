// Launchers of the CUDA NeRF kernels: plain pointers, no torch, so that the .cu compiles with nvcc
// alone. The torch binding (nerf_cuda_bind.cpp) allocates and calls them.
#pragma once
#include <cstdint>

#include "nerf_math.h"

namespace nerf {
namespace cuda {

// levels: a device array of L Level structs
template <typename T>
void hash_encode_fwd(int64_t N, int64_t L, int64_t Tsize, int64_t F, const T* x, const T* table, const Level* levels,
                     T* out);
template <typename T>
void hash_encode_bwd(int64_t N, int64_t L, int64_t Tsize, int64_t F, const T* x, const T* table, const Level* levels,
                     const T* grad_out, T* g_table /* zeroed */, T* g_x /* nullable */);
template <typename T>
void composite_fwd(int64_t R, const T* sigma, const T* rgb, const T* t0, const T* t1, const int64_t* offsets, T t_min,
                   T* out_rgb, T* out_opacity, T* out_depth);
template <typename T>
void composite_bwd(int64_t R, const T* sigma, const T* rgb, const T* t0, const T* t1, const int64_t* offsets, T t_min,
                   const T* out_rgb, const T* out_opacity, const T* out_depth, const T* g_rgb, const T* g_opacity,
                   const T* g_depth, T* g_sigma, T* g_rgbs);

// Ray marching in two calls: sample counts per ray (counts, R); then, with their exclusive scan
// offsets (R+1), the samples: ray_indices (M) and t (M, 2).
void march_count(int64_t R, const double* o, const double* d, const double* near, const double* far, const Grid& g,
                 const uint8_t* bits, double dt_min, double dt_max, double cone, int64_t* counts);
void march_fill(int64_t R, const double* o, const double* d, const double* near, const double* far, const Grid& g,
                const uint8_t* bits, double dt_min, double dt_max, double cone, const int64_t* offsets,
                int64_t* ray_indices, double* t);

}  // namespace cuda
}  // namespace nerf
