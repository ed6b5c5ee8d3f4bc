"""Poke engine (iPOKE): sample several plausible short clips of a face for one poke.

Modules, each owning one idea:
  data.py       video -> 64x64 clips (x0 + 10 frames), DIS flow, poke maps, augmentation, cache
  video_ae.py   video autoencoder (3D ResNet encoder -> z [32, 8, 8]; ConvGRU + SPADE decoder),
                image and poke encoders (autoencoders -> [64, 8, 8]), patch discriminators
  cinn.py       conditional invertible network z <-> r ~ N(0, I) (ActNorm, shuffle, masked
                convolutions, affine couplings, multi-scale split)

Shapes follow docs/ARCHITECTURE.md (the poke engine's contract): frames in [-1, 1], poke maps [2, 64, 64] in
64-px units.
"""
