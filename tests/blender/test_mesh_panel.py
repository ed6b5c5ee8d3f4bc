"""The face-mesh poke model as the artist meets it (issue 14): the shipped default, so a new plane
samples it and its job says `"model": null`; the panel offers only the switches it reads (Hold
Background, Samples, Temperature, the strip), with one line on why Land Pokes Exactly and Snap
to Face Parts are gone, and brings them back for an iPOKE model, shipped or trained. The models
are fake files with the engine's header (test_poke_panel.fake_model): the add-on tells the
kinds apart by that header alone."""

import json
import os
import types

import bpy
import pytest

from test_bake_operator import draw_panel
from test_poke_panel import (fake_mesh_model, fake_model, poked_plane,  # noqa: F401
                             sm, write)

IPOKE_SWITCHES = {("prop", "guide"), ("prop", "snap")}


def panel(sm):
    log = draw_panel(types.SimpleNamespace(main=sm.main))
    return set(log), " ".join(entry[1] for entry in log if entry[0] == "label")


def shown_model(poke):
    """The text on the Model dropdown."""
    return bpy.types.UILayout.enum_item_name(poke, "model", poke.model)


def test_the_shipped_default_is_the_face_mesh_model_and_its_job_names_none(sm, tmp_path):
    plane = poked_plane(sm, tmp_path)
    poke = plane.stillmotion.poke
    assert (poke.model, poke.model_file) == ("DEFAULT", "")
    assert shown_model(poke) == "Face mesh (any face)"
    assert sm.models.SHIPPED_DEFAULT.name == "poke_mesh.safetensors"
    assert sm.models.is_mesh_model(sm.models.model_path(bpy.context, ""))

    plan = write(sm, plane, tmp_path)
    block = json.loads(plan.job_path.read_text(encoding="utf-8"))["poke"]
    assert block["model"] is None  # the engine's own default (engine/job.py DEFAULT_POKE_MODEL)
    assert block["background"] is True and block["samples"] == 4


def test_panel_hides_what_the_mesh_model_ignores_and_says_why(sm, tmp_path):
    plane = poked_plane(sm, tmp_path)
    drawn, text = panel(sm)
    assert not IPOKE_SWITCHES & drawn
    assert {("prop", "model"), ("prop", "background"), ("prop", "samples"),
            ("prop", "temperature"), ("operator", "stillmotion.poke_sample")} <= drawn
    assert "Face mesh: pokes land exactly on the face's own landmarks, no snapping" in text
    assert "needs the Warp engine" in text
    assert "A click without a drag on the Pokes layer is a pin" in text  # pins still work
    assert "Bake renders sample 1" in text

    # The options the engine ignores do not make a strip stale; the ones it reads do.
    before = sm.poke.strip_key(plane)
    poke = plane.stillmotion.poke
    poke.guide, poke.snap = False, False
    assert sm.poke.strip_key(plane) == before
    poke.background = False
    assert sm.poke.strip_key(plane) != before


@pytest.mark.parametrize("where", ["shipped", "models folder"])
def test_panel_shows_the_ipoke_switches_for_an_ipoke_model(sm, tmp_path, monkeypatch, where):
    plane = poked_plane(sm, tmp_path)
    poke = plane.stillmotion.poke
    if where == "shipped":  # the older pixel model, kept beside the default for comparison
        fake_model(sm.models.shipped_folder() / "poke_default.safetensors")
        sm.models.refresh(bpy.context)
        poke.model = "shipped/poke_default.safetensors"
        assert shown_model(poke) == "iPOKE pixels, 1 person"
    else:
        fake_model(sm.models_dir / "anna.safetensors")
        sm.models.refresh(bpy.context)
        poke.model = "anna.safetensors"
        assert shown_model(poke) == "anna"
    drawn, text = panel(sm)
    assert IPOKE_SWITCHES | {("prop", "background")} <= drawn
    assert "Face mesh:" not in text
    before = sm.poke.strip_key(plane)
    poke.snap = False
    assert sm.poke.strip_key(plane) != before  # other samples: Sample again

    # Back to the default: the switches go again, as the artist left them.
    poke.model = "DEFAULT"
    drawn, text = panel(sm)
    assert not IPOKE_SWITCHES & drawn and "Face mesh:" in text
    assert poke.snap is False


def test_a_trained_mesh_model_in_the_models_folder_is_listed_and_read_as_one(sm, tmp_path):
    plane = poked_plane(sm, tmp_path)
    fake_mesh_model(sm.models_dir / "my_faces.safetensors")
    fake_model(sm.models_dir / "other.safetensors", arch="stillmotion-msoe")  # not a poke model
    assert bpy.ops.stillmotion.poke_refresh_models() == {"FINISHED"}
    poke = plane.stillmotion.poke
    from bl_ext.user_default.stillmotion import properties

    assert [item[0] for item in properties._model_items(poke, bpy.context)] == [
        "DEFAULT", "my_faces.safetensors"]
    poke.model = "my_faces.safetensors"
    drawn, text = panel(sm)
    assert not IPOKE_SWITCHES & drawn and "Face mesh:" in text

    # The same file rewritten as an iPOKE model: read again, not remembered from before.
    path = fake_model(sm.models_dir / "my_faces.safetensors")
    stat = path.stat()  # (a file system with coarse times could keep the old stamp)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    drawn, _text = panel(sm)
    assert IPOKE_SWITCHES <= drawn
