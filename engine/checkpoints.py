"""Weights on disk: safetensors only, checked against the architecture before loading.

One implementation for every network (VGG-19, MSOE, the poke models). Never unpickles: a
`.pt`/`.pth`/`.ckpt` file is refused with what to do instead. A file whose tensors do not match
the model is refused with a message naming the first mismatching tensor, before anything is
loaded into the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.errors import JobError

ARCHITECTURE_KEY = "stillmotion.architecture"
CONFIG_KEY = "stillmotion.config"


def save_weights(path: str | os.PathLike, model_or_state: torch.nn.Module | dict, *,
                 architecture: str, config: dict | None = None,
                 metadata: dict[str, str] | None = None) -> Path:
    """Write the tensors with the architecture name (and config, as JSON) in the header.
    Written to a temporary name and renamed, so a crash never leaves half a weights file."""
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) \
        else model_or_state
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    header = {ARCHITECTURE_KEY: architecture, CONFIG_KEY: json.dumps(config or {})}
    header.update(metadata or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=header)
    os.replace(partial, path)
    return path


def _open(path: Path):
    if not path.is_file():
        raise JobError(f"weights file not found: {path}")
    if path.suffix.lower() in {".pt", ".pth", ".ckpt", ".pkl", ".bin"}:
        raise JobError(f"{path.name}: only .safetensors weights are loaded (pickled files can run "
                       "code); convert it with safetensors.torch.save_file")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError for bad headers
        raise JobError(f"{path.name} is not a valid safetensors file ({exc}); "
                       "re-export or re-download it") from None


def read_metadata(path: str | os.PathLike) -> dict:
    """The header metadata, with the config decoded from JSON."""
    with _open(Path(path)) as handle:
        meta = dict(handle.metadata() or {})
    if CONFIG_KEY in meta:
        try:
            meta[CONFIG_KEY] = json.loads(meta[CONFIG_KEY])
        except json.JSONDecodeError:
            raise JobError(f"{Path(path).name}: its config metadata is not valid JSON") from None
    return meta


def load_weights(path: str | os.PathLike, model: torch.nn.Module, *,
                 architecture: str | None = None) -> dict:
    """Load into `model` after checking every tensor's name and shape; returns the metadata.
    With `architecture`, a file written for another network is refused by name."""
    path = Path(path)
    expected = model.state_dict()
    with _open(path) as handle:
        meta = dict(handle.metadata() or {})
        found_arch = meta.get(ARCHITECTURE_KEY)
        if architecture is not None and found_arch is not None and found_arch != architecture:
            raise JobError(f"{path.name} holds weights for '{found_arch}', not '{architecture}'")
        names = set(handle.keys())
        missing = sorted(set(expected) - names)
        unexpected = sorted(names - set(expected))
        if missing:
            raise JobError(f"{path.name} does not match the {architecture or 'model'} "
                           f"architecture: tensor '{missing[0]}' is missing"
                           + (f" ({len(missing)} missing in all)" if len(missing) > 1 else ""))
        if unexpected:
            raise JobError(f"{path.name} does not match the {architecture or 'model'} "
                           f"architecture: unexpected tensor '{unexpected[0]}'")
        state = {}
        for name, target in expected.items():
            shape = tuple(handle.get_slice(name).get_shape())
            if shape != tuple(target.shape):
                raise JobError(f"{path.name} does not match the {architecture or 'model'} "
                               f"architecture: tensor '{name}' has shape {list(shape)}, "
                               f"expected {list(target.shape)}")
            state[name] = handle.get_tensor(name).to(target.dtype)
    model.load_state_dict(state)
    if CONFIG_KEY in meta:
        meta[CONFIG_KEY] = json.loads(meta[CONFIG_KEY])
    return meta


def load_matching(path: str | os.PathLike, model: torch.nn.Module, *,
                  architecture: str | None = None) -> list[str]:
    """Warm start: copy every tensor of the file whose name and shape the model has, keep the
    model's own values for the rest, and return those names (the parts that start afresh).
    Refuses another architecture and a file sharing no tensor with the model; for loading
    finished weights use `load_weights`, which refuses any difference."""
    path = Path(path)
    expected = model.state_dict()
    with _open(path) as handle:
        found_arch = (handle.metadata() or {}).get(ARCHITECTURE_KEY)
        if architecture is not None and found_arch is not None and found_arch != architecture:
            raise JobError(f"{path.name} holds weights for '{found_arch}', not '{architecture}'")
        state = {name: handle.get_tensor(name).to(target.dtype)
                 for name, target in expected.items() if name in handle.keys()
                 and tuple(handle.get_slice(name).get_shape()) == tuple(target.shape)}
    if not state:
        raise JobError(f"{path.name} shares no tensor with the {architecture or 'model'} "
                       "architecture; start without it")
    model.load_state_dict(state, strict=False)
    return sorted(set(expected) - set(state))
