# StillMotion: `make demo` runs the main job headless (a portrait with the warp engine, a
# landscape with the Dynamic Texture engine), `make test` runs every test.
# Both set up what they need: .venv (the engine: torch, OpenCV) and one .venv-bpy-<version> per
# supported Blender (the add-on, through the bpy wheel; no torch there on purpose).

PYTHON ?= python3
BPY_VERSIONS := 4.2.23 4.5.15 5.0.1
DEMO_BPY := 5.0.1
ENGINE_PY := $(CURDIR)/.venv/bin/python
PYTEST_ARGS ?=

.PHONY: demo demo-landscape test test-engine test-blender bench extension media media-train media-faces media-landscapes clean

# face.txt (MediaPipe's face mesh and person mask) goes in with --no-deps: its metadata asks
# for a second OpenCV and numpy<2, which the models we use do not need (docs/face_parts.md).
.venv/.installed: requirements/engine.txt requirements/test.txt requirements/face.txt
	$(PYTHON) -m venv .venv
	.venv/bin/python -m pip install --quiet --upgrade pip
	.venv/bin/python -m pip install --quiet -r requirements/test.txt
	.venv/bin/python -m pip install --quiet --no-deps -r requirements/face.txt
	touch $@

.venv-bpy-%/.installed: requirements/bpy-%.txt
	$(PYTHON) -m venv .venv-bpy-$*
	.venv-bpy-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-bpy-$*/bin/python -m pip install --quiet -r requirements/bpy-$*.txt
	touch $@

media/.fetched: tools/fetch_media.py .venv/.installed
	.venv/bin/python tools/fetch_media.py
	touch $@

# The style demo's painting comes from a Debian package: only `make demo` needs it.
media/.fetched-painting: tools/fetch_media.py .venv/.installed
	.venv/bin/python tools/fetch_media.py --set painting
	touch $@

media: media/.fetched

# Training media (VGG-19 weights, clips, a painting): only for training shipped models.
media-train: .venv/.installed media/.fetched
	.venv/bin/python tools/fetch_media.py --set train

# Held-out portraits for `python -m engine evaluate` (tools/eval_cases.json); no test needs them.
media-faces: .venv/.installed media/.fetched
	.venv/bin/python tools/fetch_media.py --set faces

# Landscape photographs for `python -m engine evaluate` (tools/eval_cases.json landscape_*: a
# lake and a waterfall from Debian wallpaper packages, 110 MB of downloads, and the painting);
# no test needs them.
media-landscapes: .venv/.installed media/.fetched
	.venv/bin/python tools/fetch_media.py --set landscapes

demo: .venv/.installed .venv-bpy-$(DEMO_BPY)/.installed media/.fetched media/.fetched-painting
	.venv-bpy-$(DEMO_BPY)/bin/python tools/demo.py --engine-python $(ENGINE_PY) --out out

# Only the landscape half of the demo (Dynamic Texture engine), into out/.
demo-landscape: .venv/.installed .venv-bpy-$(DEMO_BPY)/.installed media/.fetched
	.venv-bpy-$(DEMO_BPY)/bin/python tools/demo.py --engine-python $(ENGINE_PY) --out out \
	  --only landscape

test-engine: .venv/.installed media/.fetched
	.venv/bin/python -m pytest tests/engine $(PYTEST_ARGS)

test-blender: $(foreach v,$(BPY_VERSIONS),.venv-bpy-$(v)/.installed) .venv/.installed media/.fetched
	set -e; for v in $(BPY_VERSIONS); do \
	  echo "== Blender $$v"; \
	  STILLMOTION_ENGINE_PYTHON=$(ENGINE_PY) .venv-bpy-$$v/bin/python -m pytest tests/blender $(PYTEST_ARGS); \
	done

test: test-engine test-blender

bench: .venv/.installed
	.venv/bin/python -m engine bench warp

# The installable zip, built and validated by Blender's own extension tool (it ships in the wheel).
extension: .venv-bpy-$(DEMO_BPY)/.installed
	.venv-bpy-$(DEMO_BPY)/bin/python tools/build_extension.py --out dist

clean:
	rm -rf out dist build .pytest_cache
