"""Where takes go: folder names from plane names, take numbering, saved vs unsaved files."""

import pathlib

import bpy
import pytest


@pytest.fixture
def paths(addon):
    from bl_ext.user_default.stillmotion.bake import paths

    return paths


@pytest.mark.parametrize("name, expected", [
    ("Plane", "Plane"),
    ("Bild Ölgemälde 日本", "Bild Ölgemälde 日本"),
    ("a/b\\c:d*e?f\"g<h>i|j", "a_b_c_d_e_f_g_h_i_j"),
    ("..", "plane"),
    ("  ", "plane"),
    ("CON", "_CON"),
    ("name.", "name"),
])
def test_safe_name(paths, name, expected):
    assert paths.safe_name(name) == expected


def test_safe_name_is_short_enough_for_any_filesystem(paths):
    name = paths.safe_name("é" * 300)
    assert 0 < len(name.encode("utf-8")) <= 255


def test_takes_are_numbered_after_everything_there(paths, tmp_path):
    assert paths.next_take(tmp_path) == (1, tmp_path / "take_001")
    (tmp_path / "take_001").mkdir()
    (tmp_path / "take_003.partial-4242").mkdir()  # leftover of a killed engine
    (tmp_path / "preview_007").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert paths.next_take(tmp_path) == (4, tmp_path / "take_004")
    # Previews count separately and never land on a take's folder.
    assert paths.next_take(tmp_path, paths.PREVIEW_PREFIX) == (8, tmp_path / "preview_008")


def test_partial_leftovers_of_one_take_only(paths, tmp_path):
    (tmp_path / "take_002").mkdir()
    (tmp_path / "take_002.partial-1").mkdir()
    (tmp_path / "take_0021.partial-1").mkdir()
    paths.remove_partial_leftovers(tmp_path / "take_002")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take_002", "take_0021.partial-1"]


def test_a_reserved_take_is_never_picked_again(paths, tmp_path):
    """A running bake reserves its take number, so another Blender baking the same plane
    folder never writes into (or removes) the same take."""
    output = paths.next_take(tmp_path)[1]
    paths.reserve_take(output)
    assert paths.next_take(tmp_path) == (2, tmp_path / "take_002")
    with pytest.raises(FileExistsError):
        paths.reserve_take(output)
    (tmp_path / "take_002.partial-4242").mkdir()  # an engine that got there first
    with pytest.raises(FileExistsError):
        paths.reserve_take(tmp_path / "take_002")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "take_001.partial-reserved", "take_002.partial-4242"]
    paths.remove_partial_leftovers(output)  # the bake ends: its reservation goes
    assert paths.next_take(tmp_path) == (3, tmp_path / "take_003")


def test_bakes_go_beside_the_saved_blend(paths, tmp_path):
    root = paths.bakes_root("Plane")  # unsaved: the extension's user folder
    assert "unsaved" in root.parts and root.name == "Plane"
    assert pathlib.Path(bpy.utils.extension_path_user(paths.ROOT_PACKAGE)) in root.parents

    folder = tmp_path / "Prøject"
    folder.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "shot.blend"))
    root = paths.bakes_root("Bild/Ölgemälde")
    assert root == folder / "stillmotion" / "Bild_Ölgemälde"
    assert paths.display_path(root / "take_001") == "//stillmotion/Bild_Ölgemälde/take_001"


def test_job_folders_are_fresh_and_pruned(paths):
    made = [paths.new_job_dir("Plane") for _ in range(paths.JOBS_KEPT + 3)]
    assert len(set(made)) == len(made)
    remaining = [p for p in made if p.exists()]
    assert len(remaining) <= paths.JOBS_KEPT + 1
    assert made[-1].exists()
