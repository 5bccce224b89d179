// Launchers of the CUDA mesh kernels: plain pointers, no torch, so that the .cu compiles with nvcc alone.
// The torch binding (mesh_cuda_bind.cpp) checks, allocates and calls them. Batched arrays are
// contiguous; `shared` means one attribute/texture array for the whole batch.
#pragma once
#include <cstdint>

#include "mesh_math.h"

namespace mesh {
namespace cuda {

// tris (F), box (4F) and keys (H·W) are scratch of the caller's; rast and db (B, H, W, 4).
template <typename S>
void rasterize_fwd(int64_t B, int64_t V, int64_t F, int64_t H, int64_t W, const S* pos, const int32_t* tri, Tri<S>* tris,
                   int32_t* box, unsigned long long* keys, S* rast, S* db);
template <typename S>
void rasterize_bwd(int64_t B, int64_t V, int64_t H, int64_t W, const S* pos, const int32_t* tri, const S* rast,
                   const S* g_rast, S* g_pos /* zeroed */);
template <typename S>
void interpolate_fwd(int64_t B, int64_t N, int64_t V, int64_t C, bool shared, const S* attr, const S* rast,
                     const int32_t* tri, const S* db /* nullable */, S* out, S* out_da /* nullable */);
template <typename S>
void interpolate_bwd(int64_t B, int64_t N, int64_t V, int64_t C, bool shared, const S* attr, const S* rast,
                     const int32_t* tri, const S* g_out, S* g_attr /* zeroed */, S* g_rast);
template <typename S>
void texture_fwd(int64_t B, int64_t N, int64_t T, int64_t C, bool shared, const S* mips, const MipLevel* levels, int L,
                 const S* uv, const S* uv_da, int filter, int boundary, S* out);
template <typename S>
void texture_bwd(int64_t B, int64_t N, int64_t T, int64_t C, bool shared, const S* mips, const MipLevel* levels, int L,
                 const S* uv, const S* uv_da, int filter, int boundary, const S* g_out, S* g_mips /* zeroed */,
                 S* g_uv);
// sil: scratch of B·F bytes (each face's silhouette edges)
template <typename S>
void antialias_fwd(int64_t B, int64_t H, int64_t W, int64_t C, int64_t V, int64_t F, const S* color, const S* rast,
                   const S* pos, const int32_t* tri, const int32_t* nbr, uint8_t* sil, S* out);
template <typename S>
void antialias_bwd(int64_t B, int64_t H, int64_t W, int64_t C, int64_t V, int64_t F, const S* color, const S* rast,
                   const S* pos, const int32_t* tri, const int32_t* nbr, uint8_t* sil, const S* g_out, S* g_color,
                   S* g_pos /* zeroed */);

}  // namespace cuda
}  // namespace mesh
