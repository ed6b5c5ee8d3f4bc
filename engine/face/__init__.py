"""Facial parts and person masks for the poke engine.

landmarks.py finds a face's parts (eyes, brows, nose, mouth, jaw) in a still, segmentation.py
a soft person mask; both run MediaPipe's face-mesh and selfie-segmentation models, which ship
inside the mediapipe wheel (requirements/face.txt, an optional install: nothing is downloaded
at run time). parts.py is plain geometry on the results: which part a poke starts on, and a
one-channel-per-part raster the poke model can take as a condition. Only landmarks.py and
segmentation.py import mediapipe, and only when called.
"""
