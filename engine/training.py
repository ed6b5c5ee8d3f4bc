"""What every training command shares: resumable state on disk, a wall-clock budget, the
learning-rate schedule, and running unchanged on one process or under `torchrun`.

Resumable state is one safetensors file per run (never a pickle, like every weights file here):
the modules' and optimisers' tensors, plus the counters and the optimisers' non-tensor settings
as JSON in the header. Writing goes through engine/checkpoints.save_weights, so an interrupted
save leaves the previous state intact.

Distributed: `torchrun --nproc_per_node=N python -m engine train-poke ...` sets RANK/WORLD_SIZE;
`Distributed.from_env()` then joins the group (gloo on CPU, nccl on CUDA). Without those
variables it is a single process and every helper is a no-op, so the training code has one path.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.checkpoints import read_metadata, save_weights
from engine.errors import JobError

STATE_ARCHITECTURE = "stillmotion.training-state"
_COUNTERS_KEY = "stillmotion.counters"
_OPTIMISERS_KEY = "stillmotion.optimisers"


# --- resumable state --------------------------------------------------------------------------

def _flatten_optimiser(name: str, optimiser: torch.optim.Optimizer) -> tuple[dict, dict]:
    """An optimiser's state dict as flat tensors + a JSON-able rest (hyper-parameters, steps
    stored as plain numbers)."""
    state = optimiser.state_dict()
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, slots in state["state"].items():
        plain_slots = {}
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optimiser/{name}/{index}/{key}"] = value
            else:
                plain_slots[key] = value
        plain["state"][str(index)] = plain_slots
    return tensors, plain


def _unflatten_optimiser(name: str, plain: dict, tensors: dict) -> dict:
    state = {}
    for index, slots in plain["state"].items():
        state[int(index)] = dict(slots)
    prefix = f"optimiser/{name}/"
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, slot = key[len(prefix):].split("/", 1)
            state.setdefault(int(index), {})[slot] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_state(path: str | os.PathLike, *, modules: dict[str, torch.nn.Module],
               optimisers: dict[str, torch.optim.Optimizer], counters: dict,
               config: dict | None = None) -> Path:
    """Everything needed to continue a run exactly where it stopped."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in unwrap(module).state_dict().items():
            tensors[f"module/{name}/{key}"] = value
    plain_optimisers = {}
    for name, optimiser in optimisers.items():
        flat, plain = _flatten_optimiser(name, optimiser)
        tensors.update(flat)
        plain_optimisers[name] = plain
    metadata = {_COUNTERS_KEY: json.dumps(counters), _OPTIMISERS_KEY: json.dumps(plain_optimisers)}
    return save_weights(path, tensors, architecture=STATE_ARCHITECTURE, config=config,
                        metadata=metadata)


def load_state(path: str | os.PathLike, *, modules: dict[str, torch.nn.Module],
               optimisers: dict[str, torch.optim.Optimizer]) -> dict:
    """Restore modules and optimisers saved by `save_state`; returns the counters. A state file
    from a different model layout is refused by naming the tensor (the checkpoints rule)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    if meta.get("stillmotion.architecture") != STATE_ARCHITECTURE:
        raise JobError(f"{path.name} is not a StillMotion training state; pass the run folder's "
                       "state file to --resume, or start without it")
    tensors = load_file(str(path))
    for name, module in modules.items():
        target = unwrap(module)
        prefix = f"module/{name}/"
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        expected = target.state_dict()
        for key, value in expected.items():
            if key not in own:
                raise JobError(f"{path.name} does not match this model: tensor "
                               f"'{prefix}{key}' is missing (was it trained with another config?)")
            if tuple(own[key].shape) != tuple(value.shape):
                raise JobError(f"{path.name} does not match this model: tensor '{prefix}{key}' "
                               f"has shape {list(own[key].shape)}, expected {list(value.shape)}")
        target.load_state_dict(own)
    plain = json.loads(meta[_OPTIMISERS_KEY])
    for name, optimiser in optimisers.items():
        if name in plain:
            optimiser.load_state_dict(_unflatten_optimiser(name, plain[name], tensors))
    return json.loads(meta[_COUNTERS_KEY])


# --- time and schedule ------------------------------------------------------------------------

class Budget:
    """A wall-clock limit (`--max-minutes`); None means unlimited."""

    def __init__(self, minutes: float | None):
        self.seconds = None if not minutes else minutes * 60.0
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def spent(self) -> bool:
        return self.seconds is not None and self.elapsed() >= self.seconds


def warmup_linear_decay(step: int, warmup: int, total: int) -> float:
    """The cINN schedule of the original (ipoke.md §2): 0 -> 1 linearly over `warmup` steps,
    then linearly down to 0 at `total`. A factor for the base learning rate."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    return max(0.0, 1.0 - (step - warmup) / (total - warmup))


def exponential_decay(epoch: int, gamma: float) -> float:
    return gamma ** epoch


def cosine(step: int, total: int, floor: float = 0.02) -> float:
    fraction = min(1.0, step / max(1, total))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * fraction))


# --- one process or many ----------------------------------------------------------------------

@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> "Distributed":
        """Join the process group when started by torchrun (RANK and WORLD_SIZE set)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=device)
        import torch.distributed as dist

        rank = int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        if device.type == "cuda":
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(rank=rank, world_size=world, local_rank=local, device=device)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around a module with trainable parameters; as is otherwise."""
        if not self.enabled or not any(p.requires_grad for p in module.parameters()):
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def sampler(self, dataset, shuffle: bool, seed: int):
        if not self.enabled:
            return None
        from torch.utils.data.distributed import DistributedSampler

        return DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank,
                                  shuffle=shuffle, seed=seed)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average logged numbers over the processes, so rank 0 prints the global figure."""
        if not self.enabled or not values:
            return values
        import torch.distributed as dist

        keys = sorted(values)
        packed = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                              device=self.device)
        dist.all_reduce(packed)
        packed /= self.world_size
        return dict(zip(keys, packed.tolist()))

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one (e.g. the time budget ran out)."""
        if not self.enabled:
            return flag
        import torch.distributed as dist

        packed = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(packed, op=dist.ReduceOp.MAX)
        return bool(packed.item() > 0)

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (what gets saved)."""
    return getattr(module, "module", module)


# --- a readable line per step -----------------------------------------------------------------

class ProgressLine:
    """A one-line progress bar with the losses on a terminal (stderr), rewritten in place; the
    JSON-lines progress (engine/progress.py) carries the same numbers for the Blender side."""

    def __init__(self, label: str, total: int | None, stream=None, every_s: float = 0.5):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        if not self._tty:  # a log file or a pipe: a line every now and then, not a flood
            self.every_s = max(every_s, 10.0)

    def update(self, done: int, values: dict[str, float], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        if self.total:
            filled = int(24 * min(1.0, done / self.total))
            bar = f"[{'#' * filled}{'.' * (24 - filled)}] {done}/{self.total}"
        else:
            bar = f"{done}"
        numbers = " ".join(f"{k} {v:.4g}" for k, v in values.items())
        text = f"{self.label} {bar} {numbers}"
        if self._tty:
            self.stream.write("\r" + text[:160].ljust(160))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
