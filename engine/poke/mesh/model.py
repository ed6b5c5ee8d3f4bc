"""The face-mesh poke model: iPOKE's conditional INN over a small code of landmark motion.

    code   per frame, K numbers: the landmark displacements [468, 2] (face units) projected on
           the K principal directions of the training motion, divided by their spread (so a
           standard-normal code is a typical motion; `motion_basis` maps back)
    z      the T frames' codes, [K * T, 1, 1]: what the cINN turns into N(0, I) and back
    cond   [COND, 1, 1]: the still's layout code (its landmarks on L principal directions of
           the training layouts: pose and proportions), the poke's start and its drag, both in
           face units, and the drag's length

Sampling draws r ~ N(0, temperature^2 I) and inverts the cINN (engine/poke/cinn.py's blocks,
with 1x1 couplings: the code has no spatial layout). Everything identity-specific stays out:
the network never sees a pixel.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from engine.checkpoints import load_weights, read_metadata, save_weights
from engine.errors import JobError
from engine.face.geometry import MESH_POINTS
from engine.poke.cinn import CinnConfig, ConditionalInn, config_from_dict

ARCHITECTURE = "stillmotion-mesh-poke"
CONFIG_KEY = "stillmotion.config"


@dataclass
class MeshPokeConfig:
    frames: int = 8             # model frames after the still
    codes: int = 16             # K: principal directions of the per-frame landmark motion
    layout_codes: int = 8       # L: principal directions of the still's landmark layout
    hidden: int = 256
    levels: tuple[int, ...] = (2, 2)
    factor_out: int = 32

    @property
    def cond(self) -> int:
        return self.layout_codes + 5

    def cinn_config(self) -> CinnConfig:
        return CinnConfig(z_channels=self.codes * self.frames, z_size=1,
                          cond_channels=self.cond, levels=tuple(self.levels),
                          factor_out=self.factor_out, macow_units=0,
                          coupling_hidden=self.hidden, condition_couplings=True,
                          cond_net_channels=64, coupling_kernel=1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "MeshPokeConfig":
        return config_from_dict(cls, values, "mesh poke", ("levels",))


class MeshPokeModel(nn.Module):
    """Bases (buffers, fitted once from the training data) and the cINN."""

    def __init__(self, config: MeshPokeConfig | None = None):
        super().__init__()
        self.config = config = config or MeshPokeConfig()
        points = MESH_POINTS * 2
        self.register_buffer("motion_mean", torch.zeros(points))
        self.register_buffer("motion_basis", torch.zeros(config.codes, points))  # rows * spread
        self.register_buffer("layout_mean", torch.zeros(points))
        self.register_buffer("layout_basis", torch.zeros(config.layout_codes, points))
        self.register_buffer("reference", torch.zeros(MESH_POINTS, 3))
        self.cinn = ConditionalInn(config.cinn_config())

    # -- bases -------------------------------------------------------------------------------

    def fit_bases(self, layouts: np.ndarray, motion: np.ndarray, reference: np.ndarray) -> dict:
        """Principal directions of motion [N, T, 468, 2] and layouts [N, 468, 2]; returns the
        share of variance the kept directions explain."""
        c = self.config
        rows = torch.as_tensor(motion.reshape(-1, MESH_POINTS * 2), dtype=torch.float64)
        mean, basis, share = _principal(rows, c.codes)
        self.motion_mean.copy_(mean.float())
        self.motion_basis.copy_(basis.float())
        flat = torch.as_tensor(layouts.reshape(-1, MESH_POINTS * 2), dtype=torch.float64)
        mean, basis, layout_share = _principal(flat, c.layout_codes)
        self.layout_mean.copy_(mean.float())
        self.layout_basis.copy_(basis.float())
        self.reference.copy_(torch.as_tensor(reference, dtype=torch.float32))
        return {"motion_explained": share, "layout_explained": layout_share}

    def encode_motion(self, motion: torch.Tensor) -> torch.Tensor:
        """[..., 468, 2] face units -> [..., K] codes (least squares on the basis)."""
        flat = motion.reshape(*motion.shape[:-2], -1) - self.motion_mean
        gram = self.motion_basis @ self.motion_basis.T
        return torch.linalg.solve(gram, self.motion_basis @ flat.unsqueeze(-1)).squeeze(-1)

    def decode_motion(self, codes: torch.Tensor) -> torch.Tensor:
        """[..., K] -> [..., 468, 2] face units."""
        flat = codes @ self.motion_basis + self.motion_mean
        return flat.reshape(*codes.shape[:-1], MESH_POINTS, 2)

    def condition(self, layouts: torch.Tensor, start: torch.Tensor, drag: torch.Tensor
                  ) -> torch.Tensor:
        """layouts [B, 468, 2], start and drag [B, 2] (face units) -> cond [B, COND, 1, 1]."""
        flat = layouts.reshape(len(layouts), -1) - self.layout_mean
        spread = (self.layout_basis ** 2).sum(1)
        layout = flat @ self.layout_basis.T / spread
        length = drag.norm(dim=1, keepdim=True)
        return torch.cat([layout, start, drag * 4.0, length * 4.0], 1)[:, :, None, None]

    # -- the cINN ----------------------------------------------------------------------------

    def to_z(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, T, K] -> [B, K * T, 1, 1]."""
        return codes.reshape(len(codes), -1)[:, :, None, None]

    def from_z(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(len(z), self.config.frames, self.config.codes)

    def nll(self, codes, cond) -> torch.Tensor:
        return self.cinn.nll(self.to_z(codes), cond)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """cond [B, COND, 1, 1] and noise [B, K * T] (already scaled by the temperature) ->
        codes [B, T, K]."""
        return self.from_z(self.cinn.reverse(noise[:, :, None, None], cond))


# Principal directions are estimated on at most this many rows (a fixed, seeded subset): the
# spectrum of 936-number landmark motion is settled long before, and the SVD cost grows with it.
PCA_ROWS = 40000


def _principal(rows: torch.Tensor, count: int):
    """(mean, the first `count` principal directions scaled by their standard deviation,
    explained variance share)."""
    if len(rows) > PCA_ROWS:
        pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:PCA_ROWS]
        rows = rows[pick]
    mean = rows.mean(0)
    centred = rows - mean
    _, values, vectors = torch.linalg.svd(centred, full_matrices=False)
    variance = values ** 2 / max(1, len(rows) - 1)
    share = float(variance[:count].sum() / variance.sum().clamp_min(1e-30))
    return mean, vectors[:count] * variance[:count, None].sqrt().clamp_min(1e-12), share


def save_mesh_model(path: str | os.PathLike, model: MeshPokeModel, metadata: dict | None = None
                    ) -> Path:
    return save_weights(path, model.state_dict(), architecture=ARCHITECTURE,
                        config=model.config.to_dict(),
                        metadata={k: str(v) for k, v in (metadata or {}).items()})


def is_mesh_model(path: str | os.PathLike) -> bool:
    try:
        return read_metadata(path).get("stillmotion.architecture") == ARCHITECTURE
    except Exception:  # unreadable files are reported by the loader that expects them
        return False


def load_mesh_model(path: str | os.PathLike, device: torch.device | str = "cpu"
                    ) -> MeshPokeModel:
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("stillmotion.architecture") != ARCHITECTURE:
        raise JobError(f"{path.name} is not a face-mesh poke model; pick a file made by "
                       "`python -m engine train-mesh-poke`")
    model = MeshPokeModel(MeshPokeConfig.from_dict(meta.get(CONFIG_KEY) or {}))
    load_weights(path, model, architecture=ARCHITECTURE)
    return model.to(device).eval()
