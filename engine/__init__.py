"""StillMotion engine: turns a job file (docs/JOB.md) into frames on disk.

Pure PyTorch / NumPy / OpenCV; never imports bpy. The one entry point is the command line,
`python -m engine run|check|preview|bench` (engine/cli.py), which Blender starts in its own process.
Modules import torch lazily where they can, so `python -m engine check` can report a missing
torch instead of crashing on import.
"""

__version__ = "0.1.0"
