"""Face options of the Sampled (iPOKE) engine on the Blender side (issue 5): Land Pokes Exactly,
Snap to Face Parts and Hold Background in the job; the engine's "parts" line kept on the plane
after Sample and listed under the thumbnail strip (one row per poke, pins as pins, a note when
no face was found), hidden as soon as the pokes are not the ones it was made from.

These are iPOKE's options: the planes here sample an iPOKE model (the shipped default, a
face-mesh model, ignores guide and snap; test_mesh_panel.py). The engine here is a stand-in
that answers like engine/poke/sample.py `prepare` (docs/JOB.md): it reads the job, reports a
part for each of the job's pokes and a pin for each click without a drag, then writes the
thumbnails. The real engine's parts line is checked by
test_poke_panel.py's tiny train-and-sample test."""

import json
import pathlib
import types

import bpy
import pytest

from test_bake_flow import pixel_to_world
from test_bake_operator import draw_panel, use_engine
from test_poke_panel import (POKE, SAMPLE_ENGINE, STILL_POKE, fake_model,  # noqa: F401
                             poked_plane, sm, write)

OFF_PICTURE = [(-30.0, 10.0), (5.0, 10.0)]  # starts off the 64x48 still: not in the job
SECOND_POKE = [(50.0, 30.0), (56.0, 36.0)]


def ipoke_plane(sm, folder, **strokes):
    """A poked plane sampling an iPOKE model: the face options here are theirs (the shipped
    default, a face-mesh model, reads none of guide and snap; test_mesh_panel.py)."""
    fake_model(sm.models_dir / "ipoke.safetensors")
    sm.models.refresh(bpy.context)
    plane = poked_plane(sm, folder, **strokes)
    plane.stillmotion.poke.model = "ipoke.safetensors"
    return plane


def parts_engine(parts, face=True, warning=None, keep_job=None):
    """An engine that reports `parts[i]` for the job's i-th poke (None: no part), then samples
    like test_poke_panel.SAMPLE_ENGINE; keep_job: where to copy the job it was given."""
    say_warning = (f"print(json.dumps({{'stage': 'warning', 'message': {warning!r}}}), "
                   "flush=True)\n" if warning else "")
    return f"""
import json, math, pathlib, sys
job = json.loads(pathlib.Path(sys.argv[-1]).read_text())
if {str(keep_job or "")!r}:
    pathlib.Path({str(keep_job or "")!r}).write_text(json.dumps(job))
parts = {parts!r}
{say_warning}print(json.dumps({{"stage": "parts", "face": {face!r}, "pokes": [
    {{"index": i, "part": parts[i - 1], "start": p["start"],
      "pin": math.dist(p["start"], p["end"]) < 0.5}}
    for i, p in enumerate(job["pokes"], 1)]}}), flush=True)
""" + SAMPLE_ENGINE


def rows(sm):
    """The texts the panel shows under the strip about the pokes' parts."""
    log = draw_panel(types.SimpleNamespace(main=sm.main))
    return [e[1] for e in log if e[0] == "label" and (e[1].startswith("Poke ")
                                                       or e[1].startswith("No face found"))]


def stale(sm):
    log = draw_panel(types.SimpleNamespace(main=sm.main))
    return any(e[0] == "label" and "changed since" in e[1] for e in log)


def test_face_options_go_into_the_job_and_the_panel(sm, tmp_path):
    plane = ipoke_plane(sm, tmp_path)
    poke = plane.stillmotion.poke
    assert (poke.guide, poke.snap, poke.background) == (True, True, True)
    block = write(sm, plane, tmp_path).job["poke"]
    assert (block["guide"], block["snap"], block["background"]) == (True, True, True)
    poke.guide, poke.snap, poke.background = False, True, False
    block = json.loads(write(sm, plane, tmp_path).job_path.read_text())["poke"]
    assert (block["guide"], block["snap"], block["background"]) == (False, True, False)

    props = poke.bl_rna.properties
    assert props["guide"].name == "Land Pokes Exactly"
    assert "Motion-space models only" in props["guide"].description
    assert props["snap"].name == "Snap to Face Parts"
    assert props["background"].name == "Hold Background"
    log = draw_panel(types.SimpleNamespace(main=sm.main))
    assert {("prop", "guide"), ("prop", "snap"), ("prop", "background")} <= set(log)
    hint = " ".join(e[1] for e in log if e[0] == "label")
    assert "A click without a drag on the Pokes layer is a pin" in hint


def test_sample_lists_the_part_each_poke_drives(sm, tmp_path):
    """Four strokes, the first off the picture: the job has three pokes (a drag, a pin, a
    drag) and the rows name them by their strokes, 2 to 4."""
    plane = ipoke_plane(sm, tmp_path / "scene", pokes=(OFF_PICTURE, POKE, STILL_POKE,
                                                       SECOND_POKE))
    plane.stillmotion.poke.samples = 2
    kept = tmp_path / "given-job.json"
    use_engine(tmp_path, parts_engine(["mouth", None, None], keep_job=kept))
    assert bpy.ops.stillmotion.poke_sample() == {"FINISHED"}
    job = json.loads(kept.read_text())
    assert len(job["pokes"]) == 3
    assert job["pokes"][1]["start"] == pytest.approx(job["pokes"][1]["end"], abs=0.01)

    poke = plane.stillmotion.poke
    assert [(p.number, p.part, p.pin) for p in poke.parts] == \
        [(2, "mouth", False), (3, "", True), (4, "", False)]
    assert poke.parts_face
    assert rows(sm) == ["Poke 2 → Mouth", "Poke 3 (pin)", "Poke 4 → no part"]

    # Another stroke: the rows would name the wrong pokes, so they go, and the strip says why.
    gp = plane.stillmotion.strokes
    sm.strokes.add_stroke(gp, "Pokes", [pixel_to_world(plane, p) for p in POKE])
    assert rows(sm) == [] and stale(sm)


def test_parts_come_back_when_the_pokes_are_undone(sm, tmp_path):
    plane = ipoke_plane(sm, tmp_path / "scene", pokes=(POKE, STILL_POKE))
    plane.stillmotion.poke.samples = 1
    use_engine(tmp_path, parts_engine(["left_brow", "right_eye"]))
    assert bpy.ops.stillmotion.poke_sample() == {"FINISHED"}
    expected = ["Poke 1 → Left Brow", "Poke 2 (pin) → Right Eye"]
    assert rows(sm) == expected
    name = plane.name
    bpy.ops.ed.undo_push(message="sampled")
    for option in ("guide", "background"):  # other samples, the same parts
        setattr(plane.stillmotion.poke, option, False)
        assert stale(sm) and rows(sm) == expected
        setattr(plane.stillmotion.poke, option, True)
    assert not stale(sm)
    plane.stillmotion.seed = 3  # a new seed makes other clips but moves no poke
    assert stale(sm) and rows(sm) == expected
    plane.stillmotion.poke.snap = False  # without snapping the parts mean nothing
    assert rows(sm) == []
    bpy.ops.ed.undo_push(message="snap off")
    bpy.ops.ed.undo()
    plane = bpy.data.objects[name]
    bpy.context.view_layer.objects.active = plane
    assert plane.stillmotion.poke.snap and plane.stillmotion.seed == 0
    assert rows(sm) == expected and not stale(sm)


def test_no_face_and_engines_without_a_parts_line(sm, tmp_path):
    plane = ipoke_plane(sm, tmp_path / "scene", pokes=(POKE, STILL_POKE))
    plane.stillmotion.poke.samples = 1
    warning = "no face found in the still: pokes are not snapped to facial parts"
    use_engine(tmp_path, parts_engine([None, None], face=False, warning=warning))
    assert bpy.ops.stillmotion.poke_sample() == {"FINISHED"}
    assert rows(sm) == [sm.poke.NO_FACE_NOTE, "Poke 1 → no part", "Poke 2 (pin)"]
    assert warning in bpy.context.window_manager.stillmotion.last_warning

    # Snap off: the engine sends no parts line, and the last run's parts are not kept.
    plane.stillmotion.poke.snap = False
    use_engine(tmp_path, SAMPLE_ENGINE)
    assert bpy.ops.stillmotion.poke_sample() == {"FINISHED"}
    poke = plane.stillmotion.poke
    assert len(poke.parts) == 0 and poke.parts_key == "" and rows(sm) == []


@pytest.mark.parametrize("event", [
    {"stage": "parts", "face": True},
    {"stage": "parts", "face": True, "pokes": [{"index": 0, "part": "mouth"}]},
    {"stage": "parts", "face": True, "pokes": [{"index": 1, "part": 3}]},
    {"stage": "parts", "face": True, "pokes": ["mouth"]},
])
def test_a_parts_line_of_another_shape_shows_no_parts(sm, event):
    assert sm.poke.read_parts(event, [1]) is None


def test_part_names_read_as_the_artist_says_them(sm):
    assert [sm.poke.part_name(p) for p in ("left_eye", "right_brow", "jaw", "upper_lip")] == \
        ["Left Eye", "Right Brow", "Jaw", "Upper Lip"]
    assert sm.poke.read_parts({"face": True, "pokes": [{"index": 2, "part": None, "pin": True}]},
                              [4, 7]) == (True, [(7, "", True)])
    icons = bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys()
    assert {"PINNED", "FORWARD", "INFO"} <= set(icons)  # the rows' icons exist in this Blender
