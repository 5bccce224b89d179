"""Parametric bodies: linear blend skinning with shape and pose blend shapes (our own code).

One form serves every model (SMPL/SMPL-X files the user gives, the open default model):
  v_template (V, 3), shapedirs (V, 3, S), posedirs (V, 3, 9·(J-1)), J_regressor (J, V),
  weights (V, J), parents (J,) with parents[0] = -1, faces (F, 3).
Poses are axis-angle per joint, (B, J, 3); joint 0 is the root (global orientation).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def rodrigues(rotvec: Tensor) -> Tensor:
    """(..., 3) axis-angle → (..., 3, 3) rotation matrices; smooth at zero."""
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    theta = torch.sqrt(theta2.clamp_min(1e-24))
    small = theta2 < 1e-8
    # sin(θ)/θ and (1 − cos θ)/θ², with their Taylor series near zero
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-24))
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(K)
    return eye + a * K + b * (K @ K)


def rigid_chain(rotations: Tensor, joints: Tensor, parents: Tensor) -> tuple[Tensor, Tensor]:
    """Forward kinematics. rotations (B, J, 3, 3) local, joints (B, J, 3) rest positions.

    Returns the posed joints (B, J, 3) and the skinning transforms (B, J, 4, 4) that map a rest
    vertex to its posed place for each joint (world transform with the rest joint removed).
    """
    B, J = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    local = torch.zeros(B, J, 4, 4, dtype=joints.dtype, device=joints.device)
    local[..., :3, :3] = rotations
    local[..., :3, 3] = rel
    local[..., 3, 3] = 1
    world = [local[:, 0]]
    for j in range(1, J):
        world.append(world[int(parents[j])] @ local[:, j])
    world = torch.stack(world, 1)
    posed = world[..., :3, 3]
    skin = world.clone()
    skin[..., :3, 3] = posed - (world[..., :3, :3] @ joints[..., None])[..., 0]
    return posed, skin


def shaped(betas: Tensor, v_template: Tensor, shapedirs: Tensor) -> Tensor:
    """Rest vertices (B, V, 3) of shapes `betas` (B, S'), S' ≤ S."""
    return v_template + torch.einsum("vcs,bs->bvc", shapedirs[..., :betas.shape[1]], betas)


def pose_features(R: Tensor) -> Tensor:
    """(B, J, 3, 3) local rotations → (B, 9·(J-1)) pose blend-shape features (root excluded)."""
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    return (R[:, 1:] - eye).reshape(R.shape[0], -1)


def lbs(betas: Tensor, pose: Tensor, v_template: Tensor, shapedirs: Tensor, posedirs: Tensor, J_regressor: Tensor,
        parents: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Vertices (B, V, 3) and joints (B, J, 3) of bodies with shape `betas` (B, S) and
    axis-angle `pose` (B, J, 3), before any global translation."""
    v_shaped = shaped(betas, v_template, shapedirs)
    joints = torch.einsum("jv,bvc->bjc", J_regressor, v_shaped)
    R = rodrigues(pose)
    v_posed = v_shaped + torch.einsum("vcp,bp->bvc", posedirs, pose_features(R)) if posedirs.shape[-1] else v_shaped
    posed_joints, skin = rigid_chain(R, joints, parents)
    T = torch.einsum("vj,bjmn->bvmn", weights, skin)
    verts = (T[..., :3, :3] @ v_posed[..., None])[..., 0] + T[..., :3, 3]
    return verts, posed_joints


def point_moments(regressor: Tensor, weights: Tensor, v_template: Tensor, shapedirs: Tensor,
                  posedirs: Tensor) -> dict[str, Tensor]:
    """What `posed_points` needs to place fixed vertex blends (regressor (K, V)) without skinning the mesh.

    A blend of skinned vertices is Σ_j (A_j m_kj + t_j c_kj) for skinning transforms (A_j, t_j), with
    c_kj = Σ_v r_kv w_vj and m_kj = Σ_v r_kv w_vj x_v — and m is linear in the shape (and pose) blend
    shapes, so it is precomputed here: exact, and K·J instead of V points per body.
    Returns c (K, J), m0 (K, J, 3), m_shape (K, J, 3, S), m_pose (K, J, 3, P)."""
    M = regressor[:, None, :] * weights.T[None]  # (K, J, V)
    return {"c": M.sum(-1), "m0": torch.einsum("kjv,vc->kjc", M, v_template),
            "m_shape": torch.einsum("kjv,vcs->kjcs", M, shapedirs),
            "m_pose": torch.einsum("kjv,vcp->kjcp", M, posedirs)}


def posed_points(moments: dict[str, Tensor], betas: Tensor, R: Tensor, skin: Tensor) -> Tensor:
    """Posed blends (B, K, 3) from `point_moments`, betas (B, S'), local rotations R (B, J, 3, 3) and
    the skinning transforms `skin` (B, J, 4, 4) of `rigid_chain`; equal to regressor @ lbs vertices."""
    m = moments["m0"] + torch.einsum("kjcs,bs->bkjc", moments["m_shape"][..., :betas.shape[1]], betas)
    if moments["m_pose"].shape[-1]:
        m = m + torch.einsum("kjcp,bp->bkjc", moments["m_pose"], pose_features(R))
    return (torch.einsum("bjmn,bkjn->bkm", skin[..., :3, :3], m)
            + torch.einsum("bjm,kj->bkm", skin[..., :3, 3], moments["c"]))


@dataclass
class BodyModel:
    """A body model in the one form `lbs` reads (float tensors; parents long)."""

    v_template: Tensor
    shapedirs: Tensor
    posedirs: Tensor
    J_regressor: Tensor
    weights: Tensor
    parents: Tensor
    faces: Tensor
    name: str = "body"
    joint_names: tuple[str, ...] = ()
    keypoint_regressor: Tensor | None = None  # (K, V): keypoints as fixed blends of vertices
    keypoint_names: tuple[str, ...] = ()
    beta_scale: Tensor | None = None  # (S,) what one unit of each beta spans, for reports

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]

    def __call__(self, betas: Tensor, pose: Tensor, transl: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """betas (B, S'), S' ≤ S; pose (B, J, 3); transl (B, 3). Returns vertices, joints."""
        v, j = lbs(betas, pose, self.v_template, self.shapedirs, self.posedirs, self.J_regressor, self.parents,
                   self.weights)
        if transl is not None:
            v, j = v + transl[:, None], j + transl[:, None]
        return v, j

    def joints_and_keypoints(self, betas: Tensor, pose: Tensor, transl: Tensor | None = None,
                             terms: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Posed joints (B, J, 3) and keypoints (B, K, 3) without skinning the mesh (for fitting);
        `terms` = self.fitting_terms(), cached by the caller."""
        if terms is None:
            terms = self.fitting_terms()
        joints = terms["j0"] + torch.einsum("jcs,bs->bjc", terms["j_shape"][..., :betas.shape[1]], betas)
        R = rodrigues(pose)
        posed, skin = rigid_chain(R, joints, self.parents)
        kp = posed_points(terms, betas, R, skin)
        if transl is not None:
            posed, kp = posed + transl[:, None], kp + transl[:, None]
        return posed, kp

    def fitting_terms(self) -> dict[str, Tensor]:
        """Rest joints as template + shape directions, and the keypoints' `point_moments`."""
        if self.keypoint_regressor is None:
            raise ValueError(f"body model {self.name!r} has no keypoint regressor")
        terms = point_moments(self.keypoint_regressor, self.weights, self.v_template, self.shapedirs, self.posedirs)
        terms["j0"] = self.J_regressor @ self.v_template
        terms["j_shape"] = torch.einsum("jv,vcs->jcs", self.J_regressor, self.shapedirs)
        return terms

    def to(self, dtype: torch.dtype) -> "BodyModel":
        from dataclasses import replace

        conv = {k: getattr(self, k).to(dtype) for k in ("v_template", "shapedirs", "posedirs", "J_regressor",
                                                         "weights")}
        if self.keypoint_regressor is not None:
            conv["keypoint_regressor"] = self.keypoint_regressor.to(dtype)
        return replace(self, **conv)

    def check(self, source) -> "BodyModel":
        from engine.errors import InputError

        V, J = self.v_template.shape[0], self.parents.shape[0]
        expect = {"v_template": (V, 3), "J_regressor": (J, V), "weights": (V, J)}
        for key, shape in expect.items():
            if tuple(getattr(self, key).shape) != shape:
                raise InputError(source, f"{key} has shape {tuple(getattr(self, key).shape)}, expected {shape}")
        if self.shapedirs.shape[:2] != (V, 3) or self.posedirs.shape[:2] != (V, 3):
            raise InputError(source, "shapedirs/posedirs do not match the template's vertices")
        if self.posedirs.shape[2] not in (0, 9 * (J - 1)):
            raise InputError(source, f"posedirs has {self.posedirs.shape[2]} pose features, expected {9 * (J - 1)}")
        if int(self.parents[0]) != -1 or any(not 0 <= int(p) < j for j, p in enumerate(self.parents.tolist()[1:], 1)):
            raise InputError(source, "kinematic tree is not ordered parents-first from a root")
        if self.faces.numel() and (self.faces.dim() != 2 or self.faces.shape[1] != 3):
            raise InputError(source, f"faces have shape {tuple(self.faces.shape)}, expected (F, 3)")
        if self.faces.numel() and (int(self.faces.min()) < 0 or int(self.faces.max()) >= V):
            raise InputError(source, "faces index vertices outside the template")
        for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
            if not bool(torch.isfinite(getattr(self, key)).all()):
                raise InputError(source, f"{key} has NaN or infinite values")
        return self
