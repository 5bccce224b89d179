"""Plain-torch mesh rendering: the specification of `kernels.mesh` (same arguments, same results).

Brute force — every pixel against every triangle — and differentiable by autograd where the native ops
are. The conventions (nvdiffrast's) are written out in `kernels/csrc/mesh_math.h`.
"""
from __future__ import annotations

import torch
from torch import Tensor

SUBPIXEL = 256  # exact coverage: vertices in front of the camera snap to 1/256 pixel


def pixel_ndc(n: int, dtype, device) -> Tensor:
    """NDC of the pixel centres along an axis of n pixels: (2X + 1)/n − 1, rounded as the kernels do."""
    return ((2 * torch.arange(n, dtype=torch.float64, device=device) + 1) / n - 1).to(dtype)


def triangle_rows(v: Tensor) -> tuple[Tensor, Tensor]:
    """v (..., 3, 4) clip vertices → edge rows A (..., 3, 3) over (x, y, w) and det (...)."""
    x, y, w = v[..., 0], v[..., 1], v[..., 3]
    rows = []
    for i in range(3):
        a, b = (i + 1) % 3, (i + 2) % 3
        rows.append(torch.stack([y[..., a] * w[..., b] - w[..., a] * y[..., b],
                                 w[..., a] * x[..., b] - x[..., a] * w[..., b],
                                 x[..., a] * y[..., b] - y[..., a] * x[..., b]], -1))
    A = torch.stack(rows, -2)
    det = x[..., 0] * A[..., 0, 0] + y[..., 0] * A[..., 0, 1] + w[..., 0] * A[..., 0, 2]
    return A, det


def _edges(A: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """(…, 3, 3) rows at pixels (P,) → (P, …, 3) edge values, as (a·px + b·py) + c."""
    shape = (-1,) + (1,) * (A.dim() - 2) + (1,)
    return (A[..., 0] * px.view(shape) + A[..., 1] * py.view(shape)) + A[..., 2]


def coverage(pos: Tensor, tri: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Every triangle at every pixel: covered (B, P, F) and depth z/w (B, P, F) (inf where not covered)."""
    dt, dev = pos.dtype, pos.device
    py, px = torch.meshgrid(pixel_ndc(height, dt, dev), pixel_ndc(width, dt, dev), indexing="ij")
    px, py = px.reshape(-1), py.reshape(-1)
    v = pos[:, tri.long()]  # (B, F, 3, 4)
    A, det = triangle_rows(v)
    finite = torch.isfinite(v).all(-1).all(-1)
    x, y, z, w = v.unbind(-1)
    culled = torch.zeros_like(det, dtype=torch.bool)
    for outside in (x > w, x < -w, y > w, y < -w, z > w, z < -w):
        culled |= outside.all(-1)
    sg = torch.where(det > 0, 1.0, -1.0).to(dt)
    e = _edges(A, px, py)  # (P, B, F, 3)
    s = e * sg[None, ..., None]
    na, nb = A[..., 0] * sg[..., None], A[..., 1] * sg[..., None]
    tie = (na > 0) | ((na == 0) & (nb > 0))
    inside = ((s > 0) | ((s == 0) & tie[None])).all(-1)
    # exact coverage of triangles in front of the camera, snapped to 1/256 pixel
    with torch.no_grad():
        fx = (x / w + 1) * (width * SUBPIXEL // 2)
        fy = (y / w + 1) * (height * SUBPIXEL // 2)
        lim = 16777216.0
        exact = (w > 0).all(-1) & ((fx > -lim) & (fx < lim) & (fy > -lim) & (fy < lim)).all(-1)
        X = torch.where(exact[..., None], fx, torch.zeros_like(fx)).round().long()
        Y = torch.where(exact[..., None], fy, torch.zeros_like(fy)).round().long()
        ox, oy = X.roll(-1, -1), Y.roll(-1, -1)  # edge i starts at vertex i + 1
        ex, ey = X.roll(-2, -1) - ox, Y.roll(-2, -1) - oy
        area = ex[..., 0] * (Y[..., 0] - oy[..., 0]) - ey[..., 0] * (X[..., 0] - ox[..., 0])
        sign = torch.where(area > 0, 1, -1)[..., None]
        PX = torch.arange(width).repeat(height) * SUBPIXEL + SUBPIXEL // 2
        PY = torch.arange(height).repeat_interleave(width) * SUBPIXEL + SUBPIXEL // 2
        ie = (ex[None] * (PY.view(-1, 1, 1, 1) - oy[None]) - ey[None] * (PX.view(-1, 1, 1, 1) - ox[None])) * sign[None]
        ia, ib = -ey * sign, ex * sign
        itie = (ia > 0) | ((ia == 0) & (ib > 0))
        inside_exact = ((ie > 0) | ((ie == 0) & itie[None])).all(-1)
        inside = torch.where(exact[None], inside_exact & (area != 0)[None], inside)
    ze = (e[..., 0] * z[None, ..., 0] + e[..., 1] * z[None, ..., 1]) + e[..., 2] * z[None, ..., 2]
    we = (e[..., 0] * w[None, ..., 0] + e[..., 1] * w[None, ..., 1]) + e[..., 2] * w[None, ..., 2]
    depth = ze / we
    ok = inside & (we != 0) & (depth >= -1) & (depth <= 1) & (det != 0)[None] & finite[None] & ~culled[None]
    depth = torch.where(ok, depth, torch.full_like(depth, float("inf")))
    return ok.permute(1, 0, 2), depth.permute(1, 0, 2)


def rasterize(pos: Tensor, tri: Tensor, height: int, width: int, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """pos (B, V, 4) clip space, tri (F, 3) → rast (B, H, W, 4) = (u, v, z/w, id + 1) and
    rast_db (B, H, W, 4) = (du/dX, du/dY, dv/dX, dv/dY). The nearest triangle wins; on equal depth the
    lower id. Gradients flow from u and v to pos (z/w and the derivatives are constants)."""
    B, P, F = pos.shape[0], height * width, tri.shape[0]
    best = torch.full((B, P), float("inf"), dtype=pos.dtype, device=pos.device)
    face = torch.full((B, P), -1, dtype=torch.long, device=pos.device)
    with torch.no_grad():
        for f0 in range(0, F, chunk):
            _, depth = coverage(pos.detach(), tri[f0:f0 + chunk], height, width)
            d, i = depth.min(-1)
            take = d < best  # strict: an earlier chunk keeps a tie
            best = torch.where(take, d, best)
            face = torch.where(take, i + f0, face)
    hit = face >= 0
    v = pos[torch.arange(B, device=pos.device)[:, None, None], tri.long()[face.clamp(min=0)]]  # (B, P, 3, 4)
    A, _ = triangle_rows(v)
    py, px = torch.meshgrid(pixel_ndc(height, pos.dtype, pos.device), pixel_ndc(width, pos.dtype, pos.device),
                            indexing="ij")
    px, py = px.reshape(1, P), py.reshape(1, P)
    e = (A[..., 0] * px[..., None] + A[..., 1] * py[..., None]) + A[..., 2]  # (B, P, 3)
    s = (e[..., 0] + e[..., 1]) + e[..., 2]
    s = torch.where(hit, s, torch.ones_like(s))
    u, vv = e[..., 0] / s, e[..., 1] / s
    zero = torch.zeros_like(u)
    rast = torch.stack([torch.where(hit, u, zero), torch.where(hit, vv, zero),
                        torch.where(hit, best, zero).detach(), (face + 1).to(pos.dtype)], -1)
    with torch.no_grad():
        ax = (A[..., 0, 0] + A[..., 1, 0]) + A[..., 2, 0]
        ay = (A[..., 0, 1] + A[..., 1, 1]) + A[..., 2, 1]
        s2 = s * s
        db = torch.stack([(A[..., 0, 0] * s - e[..., 0] * ax) / s2 * (2 / width),
                          (A[..., 0, 1] * s - e[..., 0] * ay) / s2 * (2 / height),
                          (A[..., 1, 0] * s - e[..., 1] * ax) / s2 * (2 / width),
                          (A[..., 1, 1] * s - e[..., 1] * ay) / s2 * (2 / height)], -1)
        db = torch.where(hit[..., None], db, torch.zeros_like(db))
    return rast.view(B, height, width, 4), db.view(B, height, width, 4)


def interpolate(attr: Tensor, rast: Tensor, tri: Tensor, rast_db: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """attr (1 or B, V, C) → per pixel (B, H, W, C), 0 where no triangle; with rast_db also the
    attributes' pixel derivatives (B, H, W, 2C) = (dA/dX, dA/dY) per channel."""
    B = rast.shape[0]
    attr = attr.expand(B, -1, -1)
    face = rast[..., 3].long() - 1
    hit = face >= 0
    corners = tri.long()[face.clamp(min=0)]  # (B, H, W, 3)
    a = attr[torch.arange(B, device=attr.device).view(B, 1, 1, 1), corners]  # (B, H, W, 3, C)
    u, v = rast[..., 0:1], rast[..., 1:2]
    out = (u * a[..., 0, :] + v * a[..., 1, :]) + (1 - u - v) * a[..., 2, :]
    out = torch.where(hit[..., None], out, torch.zeros_like(out))
    if rast_db is None:
        return out, None
    p, s = a[..., 0, :] - a[..., 2, :], a[..., 1, :] - a[..., 2, :]
    dx = p * rast_db[..., 0:1] + s * rast_db[..., 2:3]
    dy = p * rast_db[..., 1:2] + s * rast_db[..., 3:4]
    da = torch.stack([dx, dy], -1).flatten(-2)
    return out, torch.where(hit[..., None], da, torch.zeros_like(da)).detach()


def _wrap(i: Tensor, n: int, boundary: str) -> Tensor:
    return i.remainder(n) if boundary == "wrap" else i.clamp(0, n - 1)


def _sample(level: Tensor, uv: Tensor, nearest: bool, boundary: str) -> Tensor:
    """level (Bt, h, w, C), uv (B, H, W, 2) → (B, H, W, C), bilinear with texel centres at (i + ½)/w."""
    Bt, h, w, C = level.shape
    B = uv.shape[0]
    flat = level.expand(B, -1, -1, -1).reshape(B, h * w, C)

    def tap(ix, iy):
        idx = (_wrap(iy, h, boundary) * w + _wrap(ix, w, boundary)).view(B, -1, 1).expand(-1, -1, C)
        return flat.gather(1, idx).view(*uv.shape[:-1], C)

    u, v = uv[..., 0], uv[..., 1]
    if nearest:
        return tap(torch.floor(u * w).long(), torch.floor(v * h).long())
    x, y = u * w - 0.5, v * h - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.long(), y0.long()
    return ((1 - fx) * (1 - fy) * tap(x0, y0) + fx * (1 - fy) * tap(x0 + 1, y0)
            + (1 - fx) * fy * tap(x0, y0 + 1) + fx * fy * tap(x0 + 1, y0 + 1))


def mip_lod(uv_da: Tensor, width: int, height: int, levels: int) -> Tensor:
    """Isotropic level of detail from (du/dX, du/dY, dv/dX, dv/dY), clamped to [0, levels − 1]."""
    ax, ay = uv_da[..., 0] * width, uv_da[..., 1] * width
    bx, by = uv_da[..., 2] * height, uv_da[..., 3] * height
    m = torch.maximum(ax * ax + bx * bx, ay * ay + by * by)
    lod = torch.where(m > 0, 0.5 * torch.log2(m.clamp(min=torch.finfo(m.dtype).tiny)), torch.zeros_like(m))
    lod = torch.nan_to_num(lod, nan=0.0).clamp(min=0)
    return lod.clamp(max=levels - 1)


def texture(mips: list[Tensor], uv: Tensor, uv_da: Tensor | None, filter_mode: str, boundary: str) -> Tensor:
    """mips: the pyramid, each (1 or B, h, w, C); uv (B, H, W, 2) → (B, H, W, C). Non-finite uv gives 0."""
    finite = torch.isfinite(uv).all(-1, keepdim=True)
    uv = torch.where(finite, uv, torch.zeros_like(uv))
    if filter_mode != "linear-mipmap-linear" or len(mips) == 1:
        out = _sample(mips[0], uv, filter_mode == "nearest", boundary)
    else:
        lod = mip_lod(uv_da.detach(), mips[0].shape[2], mips[0].shape[1], len(mips))
        l0 = torch.floor(lod).long().clamp(max=len(mips) - 1)
        frac = (lod - l0).unsqueeze(-1)
        out = torch.zeros(*uv.shape[:-1], mips[0].shape[-1], dtype=uv.dtype, device=uv.device)
        for k, level in enumerate(mips):
            s = _sample(level, uv, False, boundary)
            w = torch.where((l0 == k)[..., None], 1 - frac, torch.zeros_like(frac))
            w = w + torch.where((l0 == k - 1)[..., None], frac, torch.zeros_like(frac))
            out = out + w * s
    return torch.where(finite, out, torch.zeros_like(out))


def edge_neighbours(tri: Tensor) -> Tensor:
    """(F, 3) → (F, 3): the triangle across edge k (from corner k to k + 1), or −1 on a boundary. An
    edge with more than two triangles counts as a boundary for all of them."""
    F = tri.shape[0]
    t = tri.long()
    a = torch.stack([t[:, 0], t[:, 1], t[:, 2]], 1).reshape(-1)
    b = torch.stack([t[:, 1], t[:, 2], t[:, 0]], 1).reshape(-1)
    n = int(t.max()) + 1 if F else 1
    key = torch.minimum(a, b) * n + torch.maximum(a, b)
    order = torch.argsort(key, stable=True)
    ks = key[order]
    out = torch.full((3 * F,), -1, dtype=torch.long)
    if F:
        uniq, counts = torch.unique_consecutive(ks, return_counts=True)
        start = torch.cumsum(counts, 0) - counts
        pairs = counts == 2
        first, second = order[start[pairs]], order[start[pairs] + 1]
        out[first] = second // 3
        out[second] = first // 3
    return out.view(F, 3).to(torch.int32)


def _to_pixels(p: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    return ((p[..., 0] / p[..., 3] + 1) * width * 0.5 - 0.5, (p[..., 1] / p[..., 3] + 1) * height * 0.5 - 0.5)


def _area(v: Tensor, width: int, height: int) -> Tensor:
    x, y = _to_pixels(v, width, height)
    return (x[..., 1] - x[..., 0]) * (y[..., 2] - y[..., 0]) - (y[..., 1] - y[..., 0]) * (x[..., 2] - x[..., 0])


def antialias(color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor, neighbours: Tensor) -> Tensor:
    """Silhouette antialiasing (B, H, W, C): for each pair of neighbouring pixels on different triangles,
    the nearer pixel's triangle's first silhouette edge that the segment between their centres crosses,
    at t: the far pixel takes t − ½ of the near one's colour (t ≥ ½), or the near pixel ½ − t of the far
    one's. Gradients reach colours and, through t, the edge's vertices."""
    B, H, W, C = color.shape
    out = color
    deltas = {}
    for dim in (2, 1):  # horizontal pairs, then vertical
        if color.shape[dim] < 2:
            continue
        sl_a = [slice(None)] * 4
        sl_b = [slice(None)] * 4
        sl_a[dim], sl_b[dim] = slice(0, -1), slice(1, None)
        ra, rb = rast[tuple(sl_a)], rast[tuple(sl_b)]
        ca, cb = color[tuple(sl_a)], color[tuple(sl_b)]
        ys, xs = torch.meshgrid(torch.arange(ra.shape[1]), torch.arange(ra.shape[2]), indexing="ij")
        xa, ya = xs.to(pos.dtype), ys.to(pos.dtype)
        xb, yb = (xa + 1, ya) if dim == 2 else (xa, ya + 1)
        fa, fb = ra[..., 3].long(), rb[..., 3].long()
        a_front = (fa != 0) & ((fb == 0) | ~(rb[..., 2] < ra[..., 2]))
        valid = fa != fb
        f = torch.where(a_front, fa, fb) - 1
        f = torch.where(valid, f, torch.zeros_like(f)).clamp(min=0)
        px, py = torch.where(a_front, xa, xb), torch.where(a_front, ya, yb)
        qx, qy = torch.where(a_front, xb, xa), torch.where(a_front, yb, ya)
        bidx = torch.arange(B).view(B, 1, 1)
        v = pos[bidx[..., None], tri.long()[f]]  # (B, h, w, 3, 4)
        front = (v[..., 3] > 0).all(-1)
        area = _area(v, W, H)
        best_t = torch.full(f.shape, 2.0, dtype=pos.dtype)
        best_k = torch.full(f.shape, -1, dtype=torch.long)
        for k in range(3):
            n = neighbours.long()[f][..., k]
            vn = pos[bidx[..., None], tri.long()[n.clamp(min=0)]]
            n_front = (vn[..., 3] > 0).all(-1)
            sil = (n < 0) | (n_front & ((_area(vn, W, H) > 0) != (area > 0)))
            x0, y0 = _to_pixels(v[..., k, :], W, H)
            x1, y1 = _to_pixels(v[..., (k + 1) % 3, :], W, H)
            ea = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
            eb = (x1 - x0) * (qy - y0) - (y1 - y0) * (qx - x0)
            cross = ((ea > 0) & (eb < 0)) | ((ea < 0) & (eb > 0))
            t = ea / torch.where(cross, ea - eb, torch.ones_like(ea))
            cx, cy = px + t * (qx - px), py + t * (qy - py)
            ex, ey = x1 - x0, y1 - y0
            s = ((cx - x0) * ex + (cy - y0) * ey) / (ex * ex + ey * ey)
            ok = sil & cross & (s >= 0) & (s <= 1) & (t < best_t)
            best_t = torch.where(ok, t, best_t)
            best_k = torch.where(ok, torch.full_like(best_k, k), best_k)
        hit = valid & front & (best_k >= 0)
        t = torch.where(hit, best_t, torch.full_like(best_t, 0.5))
        far = t >= 0.5  # the far pixel is blended toward the near one
        alpha = torch.where(far, t - 0.5, 0.5 - t)
        alpha = torch.where(hit, alpha, torch.zeros_like(alpha))[..., None]
        target_is_a = far != a_front  # far: the target is the non-front pixel
        da = torch.where(target_is_a[..., None], alpha * (cb - ca), torch.zeros_like(ca))
        db = torch.where(~target_is_a[..., None], alpha * (ca - cb), torch.zeros_like(cb))
        deltas[dim] = (sl_a, sl_b, da, db)
    # each pixel sums its pairs in the kernel's order: left, up, right, down
    for part in ("b2", "b1", "a2", "a1"):
        dim = int(part[1])
        if dim not in deltas:
            continue
        sl_a, sl_b, da, db = deltas[dim]
        pad = torch.zeros_like(color)
        pad[tuple(sl_b if part[0] == "b" else sl_a)] = db if part[0] == "b" else da
        out = out + pad
    return out
