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


def lbs(betas: Tensor, pose: Tensor, v_template: Tensor, shapedirs: Tensor, posedirs: Tensor, J_regressor: Tensor,
        parents: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Vertices (B, V, 3) and joints (B, J, 3) of bodies with shape `betas` (B, S) and
    axis-angle `pose` (B, J, 3), before any global translation."""
    v_shaped = v_template + torch.einsum("vcs,bs->bvc", shapedirs[..., :betas.shape[1]], betas)
    joints = torch.einsum("jv,bvc->bjc", J_regressor, v_shaped)
    R = rodrigues(pose)
    eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
    pose_feature = (R[:, 1:] - eye).reshape(pose.shape[0], -1)
    v_posed = v_shaped + torch.einsum("vcp,bp->bvc", posedirs, pose_feature) if posedirs.shape[-1] else v_shaped
    posed_joints, skin = rigid_chain(R, joints, parents)
    T = torch.einsum("vj,bjmn->bvmn", weights, skin)
    verts = (T[..., :3, :3] @ v_posed[..., None])[..., 0] + T[..., :3, 3]
    return verts, posed_joints


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
        if self.faces.numel() and (int(self.faces.min()) < 0 or int(self.faces.max()) >= V):
            raise InputError(source, "faces index vertices outside the template")
        return self
