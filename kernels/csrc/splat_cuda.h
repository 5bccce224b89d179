// Launchers of the CUDA Gaussian-splatting kernels: plain pointers, no torch, so that the .cu
// compiles with nvcc alone. The torch binding (splat_cuda_bind.cpp) allocates and calls them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "splat_math.h"

namespace splat {
namespace cuda {

template <typename T>
void project_fwd(int64_t N, const T* means, const T* quats, const T* log_scales, const Camera& cam, T* means2d,
                 T* conics, T* depths, int32_t* radii, T* comp);
template <typename T>
void project_bwd(int64_t N, const T* means, const T* quats, const T* log_scales, const Camera& cam,
                 const int32_t* radii, const T* v_means2d, const T* v_conics, const T* v_depths, const T* v_comp,
                 T* v_means, T* v_quats, T* v_log_scales, T* v_view12 /* nullable, zeroed */);
template <typename T>
void sh_fwd(int64_t N, int K, int degree, const T* coeffs, const T* means, const T* campos, T* colors);
template <typename T>
void sh_bwd(int64_t N, int K, int degree, const T* coeffs, const T* means, const T* campos, const T* v_colors,
            T* v_coeffs, T* v_means, T* v_campos /* zeroed */);
// Binning in two calls: counts (N) of tiles per Gaussian; then, with their exclusive scan
// g_offsets (N+1) and M = g_offsets[N], the sorted ids (M) and tile_offsets (T+1).
template <typename T>
void bin_counts(int64_t N, const T* means2d, const int32_t* radii, int width, int height, int64_t* counts);
void exclusive_scan(int64_t N, const int64_t* counts, int64_t* offsets /* N+1 */);
template <typename T>
void bin_sort(int64_t N, int64_t M, const T* means2d, const int32_t* radii, const T* depths, int width, int height,
              const int64_t* g_offsets, int32_t* ids, int64_t* tile_offsets);
template <typename T>
void raster_fwd(int64_t N, int C, const T* means2d, const T* conics, const T* colors, const T* opacities,
                const T* depths, const T* bg, const int64_t* tile_offsets, const int32_t* ids, int width,
                int height, T* rgb, T* alpha, T* depth, int32_t* last);
template <typename T>
void raster_bwd(int64_t N, int C, const T* means2d, const T* conics, const T* colors, const T* opacities,
                const T* depths, const T* bg, const int64_t* tile_offsets, const int32_t* ids, int width,
                int height, const T* alpha, const int32_t* last, const T* v_rgb, const T* v_alpha,
                const T* v_depth, T* v_means2d, T* v_conics, T* v_colors, T* v_opacities, T* v_depths,
                T* absgrad /* all zeroed */);

}  // namespace cuda
}  // namespace splat
