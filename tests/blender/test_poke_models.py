"""The poke model picker with several shipped models: the shipped default (the face-mesh model,
issue 14), the older iPOKE models in the extension's models/ folder under names that say what
they are, then the user's models folder; stored choices that keep naming their file, the job's
model path for each, and shipped files that go away."""

import json
import shutil
import types

import bpy
import pytest

from conftest import ADDON
from test_bake_flow import make_plane
from test_poke_panel import fake_mesh_model, fake_model, poked_plane


@pytest.fixture
def sm(addon, tmp_path, monkeypatch):
    from bl_ext.user_default.stillmotion import properties
    from bl_ext.user_default.stillmotion.bake import models
    from bl_ext.user_default.stillmotion.scene import errors, job, strokes

    # A fake extension models/ folder as shipped: the face-mesh default, the three older iPOKE
    # models (one with its card), one the picker has no label for, and another network's
    # weights that it must leave out.
    shipped = tmp_path / "extension_models"
    fake_mesh_model(shipped / "poke_mesh.safetensors")
    fake_model(shipped / "poke_default.safetensors")
    fake_model(shipped / "poke_faces.safetensors")
    (shipped / "poke_faces.md").write_text("# poke_faces\n", encoding="utf-8")
    fake_model(shipped / "poke_motion.safetensors")
    fake_model(shipped / "poke_zoe.safetensors")
    fake_model(shipped / "msoe.safetensors", arch="stillmotion-msoe")
    monkeypatch.setattr(models, "SHIPPED_DEFAULT", shipped / "poke_mesh.safetensors")
    # The user's models folder: a model with a shipped model's file name, and one more.
    user = tmp_path / "user_models"
    fake_model(user / "poke_faces.safetensors")
    fake_model(user / "anna.safetensors")
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.models_dir = str(user)
    models.refresh(bpy.context)
    yield types.SimpleNamespace(models=models, properties=properties, job=job, errors=errors,
                                strokes=strokes, shipped=shipped, user=user, prefs=prefs)
    prefs.models_dir = ""
    models.refresh(bpy.context)


def _enum(sm, poke):
    return sm.properties._model_items(poke, bpy.context)


def _identifiers(sm, poke):
    return [item[0] for item in _enum(sm, poke)]


def _job_model(sm, plane, tmp_path):
    plan = sm.job.write_job(plane, tmp_path / "job", tmp_path / "out" / "take_001")
    return json.loads(plan.job_path.read_text(encoding="utf-8"))["poke"]["model"]


SHIPPED = ["shipped/poke_faces.safetensors", "shipped/poke_motion.safetensors",
           "shipped/poke_default.safetensors", "shipped/poke_zoe.safetensors"]


def test_picker_lists_default_then_shipped_models_then_the_models_folder(sm, tmp_path):
    poke = make_plane(tmp_path).stillmotion.poke
    assert poke.model == "DEFAULT"  # a new plane samples the face-mesh model
    assert _identifiers(sm, poke) == ["DEFAULT"] + SHIPPED + ["anna.safetensors",
                                                              "poke_faces.safetensors"]
    items = {item[0]: item for item in _enum(sm, poke)}
    assert [items[i][1] for i in ["DEFAULT"] + SHIPPED] == [
        "Face mesh (any face)", "iPOKE motion, 2 people", "iPOKE motion, 1 person",
        "iPOKE pixels, 1 person", "poke_zoe"]
    assert items["DEFAULT"][2].startswith("Shipped default: Moves the landmarks of the face")
    shipped_faces = items["shipped/poke_faces.safetensors"]
    user_faces = items["poke_faces.safetensors"]
    assert user_faces[1] == "poke_faces"  # the user's own file: its own name
    assert shipped_faces[2].startswith("Older: ") and "kept for comparison" in shipped_faces[2]
    assert shipped_faces[2].endswith(f"({sm.shipped / 'poke_faces.safetensors'})")
    assert items["shipped/poke_zoe.safetensors"][2] == \
        f"{sm.shipped / 'poke_zoe.safetensors'} (shipped)"
    assert user_faces[2] == str(sm.user / "poke_faces.safetensors")
    assert shipped_faces[3] == "PACKAGE" and user_faces[3] == "FILE_3D"
    # The older pixel model is one of the shipped ones now, and its file is what a job names.
    assert sm.models.model_path(bpy.context, "") == sm.shipped / "poke_mesh.safetensors"
    assert sm.models.is_mesh_model(sm.models.model_path(bpy.context, ""))
    assert not sm.models.is_mesh_model(sm.shipped / "poke_default.safetensors")


@pytest.mark.parametrize("choice, stored, folder", [
    ("shipped/poke_faces.safetensors", "shipped/poke_faces.safetensors", "shipped"),
    ("shipped/poke_default.safetensors", "shipped/poke_default.safetensors", "shipped"),
    ("poke_faces.safetensors", "poke_faces.safetensors", "user"),
    ("anna.safetensors", "anna.safetensors", "user"),
])
def test_each_choice_writes_its_own_absolute_path_into_the_job(sm, tmp_path, choice, stored,
                                                               folder):
    plane = poked_plane(sm, tmp_path)
    poke = plane.stillmotion.poke
    poke.model = choice
    assert poke.model_file == stored and poke.model == choice
    expected = getattr(sm, folder) / choice.removeprefix("shipped/")
    assert _job_model(sm, plane, tmp_path) == str(expected.resolve())

    poke.model = "DEFAULT"  # the engine's own default: null (docs/JOB.md)
    assert poke.model_file == "" and _job_model(sm, plane, tmp_path) is None


def test_choices_survive_a_refresh_a_moved_models_folder_and_a_reopened_file(sm, tmp_path):
    plane = make_plane(tmp_path)
    poke = plane.stillmotion.poke
    poke.model = "shipped/poke_faces.safetensors"
    assert bpy.ops.stillmotion.poke_refresh_models() == {"FINISHED"}
    assert poke.model == "shipped/poke_faces.safetensors"

    # The user's same-named model, then the models folder moved: still the user's file.
    poke.model = "poke_faces.safetensors"
    moved = tmp_path / "moved_models"
    shutil.move(str(sm.user), str(moved))
    sm.prefs.models_dir = str(moved)
    bpy.ops.stillmotion.poke_refresh_models()
    assert poke.model == "poke_faces.safetensors"
    assert sm.models.model_path(bpy.context, poke.model_file) == moved / "poke_faces.safetensors"

    # Across sessions: the stored text comes back with the .blend.
    other = make_plane(tmp_path / "second")
    other.stillmotion.poke.model = "shipped/poke_zoe.safetensors"
    names = plane.name, other.name
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    first, second = (bpy.data.objects[name].stillmotion.poke for name in names)
    assert (first.model_file, first.model) == ("poke_faces.safetensors",) * 2
    assert (second.model_file, second.model) == ("shipped/poke_zoe.safetensors",) * 2


def test_shipped_models_that_are_gone_are_not_listed(sm, tmp_path):
    plane = poked_plane(sm, tmp_path)
    poke = plane.stillmotion.poke
    poke.model = "shipped/poke_faces.safetensors"

    (sm.shipped / "poke_zoe.safetensors").unlink()  # not chosen: gone from the list at once
    assert "shipped/poke_zoe.safetensors" not in _identifiers(sm, poke)
    bpy.ops.stillmotion.poke_refresh_models()
    assert _identifiers(sm, poke) == ["DEFAULT"] + SHIPPED[:3] + ["anna.safetensors",
                                                                  "poke_faces.safetensors"]
    for name in ("poke_motion", "poke_default"):
        (sm.shipped / f"{name}.safetensors").unlink()

    # The chosen one gone: kept in the list as missing (not silently swapped for the default),
    # and Sample/Bake refuse it; the user's file of the same name is untouched.
    (sm.shipped / "poke_faces.safetensors").unlink()
    bpy.ops.stillmotion.poke_refresh_models()
    assert _identifiers(sm, poke) == ["DEFAULT", "anna.safetensors", "poke_faces.safetensors",
                                      "shipped/poke_faces.safetensors"]
    assert poke.model == "shipped/poke_faces.safetensors"
    assert _enum(sm, poke)[-1][1:4:2] == ("iPOKE motion, 2 people (missing)", "ERROR")
    with pytest.raises(sm.errors.StillMotionError,
                       match="shipped poke model 'iPOKE motion, 2 people' is missing.*reinstall"):
        sm.job.write_job(plane, tmp_path / "job", tmp_path / "out" / "take_001")

    # A stripped install without a models/ folder at all: the default entry and the user's.
    shutil.rmtree(sm.shipped)
    poke.model = "DEFAULT"
    bpy.ops.stillmotion.poke_refresh_models()
    assert _identifiers(sm, poke) == ["DEFAULT", "anna.safetensors", "poke_faces.safetensors"]


def test_a_shipped_choice_edited_by_hand_stays_in_the_extension_folder(sm):
    path = sm.models.model_path(bpy.context, "shipped/../../poke_faces.safetensors")
    assert path == sm.shipped / "poke_faces.safetensors"
