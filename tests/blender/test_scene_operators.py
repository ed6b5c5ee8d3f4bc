"""Add Strokes and Sync Mask Labels, run through bpy.ops as a script or a button would."""

import importlib

import bpy
import numpy as np
import pytest

from conftest import ADDON, import_image_plane, save_test_image


@pytest.fixture
def st(addon):
    return importlib.import_module(ADDON + ".scene.strokes")


@pytest.fixture
def plane(addon, tmp_path):
    return import_image_plane(save_test_image(tmp_path / "still.png", 32, 16))


def test_add_strokes_creates_then_reuses(st, plane):
    assert bpy.ops.stillmotion.add_strokes.poll()
    assert bpy.ops.stillmotion.add_strokes() == {"FINISHED"}
    gp_obj = bpy.context.active_object
    assert gp_obj.type in {"GPENCIL", "GREASEPENCIL"}
    assert plane.stillmotion.strokes == gp_obj and gp_obj.select_get()
    n_objects = len(bpy.data.objects)
    # Run again from the plane, and from the strokes object itself: still the one object.
    bpy.context.view_layer.objects.active = plane
    assert bpy.ops.stillmotion.add_strokes() == {"FINISHED"}
    assert bpy.ops.stillmotion.add_strokes() == {"FINISHED"}
    assert len(bpy.data.objects) == n_objects
    assert bpy.context.active_object == gp_obj


def test_add_strokes_needs_an_image_plane(st, addon):
    assert not bpy.ops.stillmotion.add_strokes.poll()  # nothing active
    bpy.ops.mesh.primitive_plane_add()
    assert not bpy.ops.stillmotion.add_strokes.poll()  # a mesh without a picture
    with pytest.raises(RuntimeError, match="poll"):
        bpy.ops.stillmotion.add_strokes()


def test_sync_mask_labels(st, plane):
    assert not bpy.ops.stillmotion.sync_mask_labels.poll()  # no strokes yet
    bpy.ops.stillmotion.add_strokes()
    gp_obj = plane.stillmotion.strokes
    m = np.array(plane.matrix_world)

    def loop(cx):
        local = np.array([(cx, 0, 0.01, 1), (cx + 0.2, 0, 0.01, 1), (cx + 0.1, 0.2, 0.01, 1)])
        return (local @ m.T)[:, :3]

    for cx in (-0.8, -0.3, 0.2):
        st.add_stroke(gp_obj, "Masks", loop(cx))
    labels = plane.stillmotion.mask_labels
    labels.add()
    labels[0]["kept"] = True  # marks the existing label: it must survive the sync
    assert bpy.ops.stillmotion.sync_mask_labels() == {"FINISHED"}  # strokes object is active
    assert len(labels) == 3 and labels[0].get("kept") is True
    assert all(item.label == "static" for item in labels)
    bpy.context.view_layer.objects.active = plane
    for _ in range(2):
        labels.add()
    assert bpy.ops.stillmotion.sync_mask_labels() == {"FINISHED"}
    assert len(labels) == 3 and labels[0].get("kept") is True
