"""Style (issue 18), the add-on half: plane.stillmotion.style_* -> the job's top-level "style"
object for every engine (Warp, Sampled (iPOKE), Dynamic Texture with either method), the
painting exported like the still, the refusals an artist can fix (Masked Regions without a
mask, a painting Blender cannot read), Strength 0 as no style, and the Style sub-panel for
every engine (Feather only for Masked Regions)."""

import json
import types

import bpy
import numpy as np
import pytest

from conftest import save_test_image
from test_bake_flow import make_plane
from test_bake_operator import RecordingLayout
from test_poke_panel import fake_mesh_model, poked_plane

POKE = [(10.0, 24.0), (20.0, 24.0)]  # image pixels (64 x 48 still), y down
SKY = [(2.0, 2.0), (62.0, 2.0), (62.0, 18.0), (2.0, 18.0)]
ARROW = [(20.0, 10.0), (35.0, 10.0)]  # inside the sky
GROUND = [(2.0, 28.0), (62.0, 28.0), (62.0, 46.0), (2.0, 46.0)]


@pytest.fixture
def sm(addon, tmp_path, monkeypatch):
    from bl_ext.user_default.stillmotion.bake import models, poke
    from bl_ext.user_default.stillmotion.panels import main
    from bl_ext.user_default.stillmotion.scene import errors, job, strokes

    # The Sampled engine needs its model file; the shipped default may not be checked out.
    shipped = fake_mesh_model(tmp_path / "shipped" / "poke_mesh.safetensors")
    monkeypatch.setattr(models, "SHIPPED_DEFAULT", shipped)
    return types.SimpleNamespace(job=job, strokes=strokes, errors=errors, main=main, poke=poke)


def styled_plane(sm, folder, engine, *, masks=(), labels=(), pokes=(POKE,)):
    """A 64 x 48 plane on engine with the given strokes (masks take labels in order)."""
    plane = poked_plane(sm, folder, pokes=pokes, masks=masks)
    settings = plane.stillmotion
    settings.engine = engine
    for label in labels:
        settings.mask_labels.add().label = label
    return plane


def grid_painting(name="painting", size=(32, 24)):
    """A generated image (no file, so the job must export its pixels), in colours: the engine
    refuses a flat painting or one under 16 px on a side (engine/style)."""
    painting = bpy.data.images.new(name, *size)
    painting.generated_type = "COLOR_GRID"
    return painting


def top_down_rgb(image):
    w, h = image.size
    px = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(px)
    return (w, h), px.reshape(h, w, image.channels)[::-1, :, :3]


def write(sm, plane, tmp_path, **kwargs):
    plan = sm.job.write_job(plane, tmp_path / "job", tmp_path / "out" / "take_001", **kwargs)
    assert json.loads(plan.job_path.read_text(encoding="utf-8")) == plan.job
    return plan


def rgb(path):
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        return top_down_rgb(image)
    finally:
        bpy.data.images.remove(image)


def test_defaults_are_no_style(sm, tmp_path):
    settings = make_plane(tmp_path).stillmotion
    assert settings.style_image is None
    assert settings.style_strength == pytest.approx(0.8)
    assert (settings.style_where, settings.style_feather) == ("ALL", 0.0)
    strength = settings.bl_rna.properties["style_strength"]
    assert (strength.hard_min, strength.hard_max, strength.subtype) == (0.0, 1.0, "FACTOR")
    assert settings.bl_rna.properties["style_feather"].hard_min == 0.0
    where = {i.identifier: i.value for i in settings.bl_rna.properties["style_where"].enum_items}
    assert where == {"ALL": 0, "MASKS": 1}  # saved files store the number


def test_warp_job_has_the_style_with_the_painting_exported(sm, tmp_path):
    plane = styled_plane(sm, tmp_path, "WARP", masks=[GROUND], labels=["static"])
    settings = plane.stillmotion
    painting = settings.style_image = grid_painting()
    settings.style_strength, settings.style_where, settings.style_feather = 0.5, "MASKS", 6.0
    plan = write(sm, plane, tmp_path)
    assert plan.job["engine"] == "warp" and len(plan.job["masks"]) == 1
    assert plan.job["style"] == {"image": "painting.png", "strength": 0.5, "where": "masks",
                                 "feather": 6.0}
    size, pixels = rgb(plan.job_path.parent / "painting.png")
    expected_size, expected = top_down_rgb(painting)
    assert size == expected_size == (32, 24)
    assert expected.std() > 0.1  # a picture in colours, not a flat one
    assert np.abs(pixels - expected).max() < 0.5 / 255  # exactly the painting's pixels
    assert not any("Style" in w for w in plan.warnings)

    # No painting: no style key, and nothing said about it.
    settings.style_image = None
    plan = write(sm, plane, tmp_path)
    assert "style" not in plan.job
    assert not any("Style" in w for w in plan.warnings)


def test_poke_job_names_a_plain_painting_file_untouched(sm, tmp_path):
    plane = styled_plane(sm, tmp_path, "POKE")
    settings = plane.stillmotion
    painting = save_test_image(tmp_path / "van gogh.png", 16, 12)
    settings.style_image = bpy.data.images.load(str(painting))
    job = write(sm, plane, tmp_path).job
    assert job["engine"] == "poke" and len(job["pokes"]) == 1 and "poke" in job
    assert job["style"] == {"image": str(painting), "strength": pytest.approx(0.8),
                            "where": "all", "feather": 0.0}
    assert job["style"]["strength"] == 0.8  # rounded, not the float32 0.800000011920929
    assert not (tmp_path / "job" / "painting.png").exists()
    # Sample's thumbnails are made with the style: changing it says they are out of date.
    before = sm.poke.strip_key(plane)
    settings.style_strength = 0.3
    assert sm.poke.strip_key(plane) != before
    settings.style_strength = 0.0  # no style: the key of a plane without one
    no_style = sm.poke.strip_key(plane)
    settings.style_image = None
    assert sm.poke.strip_key(plane) == no_style


@pytest.mark.parametrize("method", ["ADVECT", "TWO_STREAM"])
def test_dyntex_job_has_the_style_for_both_methods(sm, tmp_path, method):
    plane = styled_plane(sm, tmp_path, "DYNTEX", masks=[SKY, GROUND],
                         labels=["clouds", "static"], pokes=[ARROW])
    settings = plane.stillmotion
    settings.dyntex.method = method
    settings.style_image = grid_painting()
    settings.style_strength, settings.style_where, settings.style_feather = 1.0, "MASKS", 0.0
    plan = write(sm, plane, tmp_path)
    job = plan.job
    assert job["engine"] == "dyntex"
    assert job["style"] == {"image": "painting.png", "strength": 1.0, "where": "masks",
                            "feather": 0.0}
    assert (plan.job_path.parent / "painting.png").is_file()
    if method == "TWO_STREAM":
        # The two-stream style stream is its own image, exported beside the Style's painting.
        assert job["dyntex"]["style"] is None
        settings.dyntex.style_image = grid_painting("stream", (16, 16))
        job = write(sm, plane, tmp_path).job
        assert job["dyntex"]["style"] == "style.png" and job["style"]["image"] == "painting.png"
        assert rgb(plan.job_path.parent / "style.png")[0] == (16, 16)
        assert rgb(plan.job_path.parent / "painting.png")[0] == (32, 24)
    else:
        assert job["dyntex"] == {"method": "advect"}


def test_strength_0_writes_no_style_and_says_so(sm, tmp_path):
    plane = styled_plane(sm, tmp_path, "WARP")
    settings = plane.stillmotion
    settings.style_image = grid_painting()
    settings.style_strength = 0.0
    settings.style_where = "MASKS"  # no mask, but no style either: no refusal
    plan = write(sm, plane, tmp_path)
    assert "style" not in plan.job
    assert not (plan.job_path.parent / "painting.png").exists()
    assert any("'painting' is not used because Strength is 0: strength 0 leaves the still as "
               "it is" in w for w in plan.warnings)


@pytest.mark.parametrize("engine, masks, labels, words", [
    ("WARP", [], [], "Masked Regions, but there is no mask on the picture to paint inside: draw "
                     "a closed outline on the Masks layer .* or choose Whole Picture"),
    ("POKE", [], [], "there is no mask on the picture to paint inside: draw a closed outline "
                     "on the Masks layer"),
    ("WARP", [SKY], ["clouds"], "Warp uses only Static masks and none of the masks drawn is "
                                "one: label the mask to paint Static .* or choose Whole Picture"),
    ("POKE", [SKY], ["water"], "Sampled \\(iPOKE\\) uses only Static masks"),
    # A static mask entirely off the picture is no mask on the picture.
    ("WARP", [[(70.0, 2.0), (90.0, 2.0), (90.0, 20.0), (70.0, 20.0)]], ["static"],
     "there is no mask on the picture to paint inside"),
])
def test_masked_regions_without_a_mask_is_refused(sm, tmp_path, engine, masks, labels, words):
    plane = styled_plane(sm, tmp_path, engine, masks=masks, labels=labels)
    settings = plane.stillmotion
    settings.style_image = grid_painting()
    settings.style_where = "MASKS"
    with pytest.raises(sm.errors.StillMotionError, match=words):
        write(sm, plane, tmp_path)
    assert not (tmp_path / "job" / "job.json").exists()
    assert not (tmp_path / "job" / "painting.png").exists()
    # The whole picture needs no mask.
    settings.style_where = "ALL"
    assert write(sm, plane, tmp_path).job["style"]["where"] == "all"


@pytest.mark.parametrize("case, words", [
    ("missing", "The file of the Style painting 'gone.png' is missing: .*gone.png. Relink it"),
    ("damaged", "Blender cannot read the Style painting 'broken.png' .*save it as PNG or JPEG"),
    ("sequence", "The Style painting 'frames' is an image sequence: pick a single picture"),
])
def test_a_painting_that_cannot_be_read_is_refused(sm, tmp_path, case, words):
    plane = styled_plane(sm, tmp_path, "WARP")
    if case == "missing":
        painting = bpy.data.images.load(str(save_test_image(tmp_path / "gone.png", 8, 8)))
        (tmp_path / "gone.png").unlink()
    elif case == "damaged":
        (tmp_path / "broken.png").write_bytes(b"not a PNG at all")
        painting = bpy.data.images.load(str(tmp_path / "broken.png"))
    else:
        painting = bpy.data.images.new("frames", 4, 4)
        painting.source = "SEQUENCE"
    plane.stillmotion.style_image = painting
    with pytest.raises(sm.errors.StillMotionError, match=words):
        write(sm, plane, tmp_path)
    assert not (tmp_path / "job" / "job.json").exists()


# -- the panel ---------------------------------------------------------------------------------

class OwnerLayout(RecordingLayout):
    """RecordingLayout that also logs whose property each widget shows, as ("owner", the
    property group's RNA name, the property) and whether it is drawn greyed out."""

    def __init__(self, log, active=True):
        super().__init__(log)
        self.__dict__["active"] = active

    def _child(self, *args, **kwargs):
        return OwnerLayout(self.log, self.active)

    row = column = box = split = grid_flow = _child

    def prop(self, data, name, **kwargs):
        super().prop(data, name, **kwargs)
        self.log.append(("owner", data.bl_rna.identifier, name, self.active))

    def template_ID(self, data, name, **kwargs):
        super().template_ID(data, name, **kwargs)
        self.log.append(("owner", data.bl_rna.identifier, name, self.active))

    def panel(self, idname, default_closed=False):
        self.log.append(("panel", idname, default_closed))
        return OwnerLayout(self.log), OwnerLayout(self.log)


def draw(sm):
    members = {n: v for n, v in vars(sm.main.VIEW3D_PT_stillmotion).items()
               if n.startswith("draw")}
    log = []
    panel = type("FakePanel", (), members)()
    panel.layout = OwnerLayout(log)
    panel.draw(bpy.context)
    return log


def style_widgets(log):
    """The plane settings' style_* widgets, in drawing order -> greyed out or not."""
    return {e[2]: e[3] for e in log
            if e[0] == "owner" and e[1] == "StillMotionPlaneSettings"
            and e[2].startswith("style_")}


@pytest.mark.parametrize("engine, method", [("WARP", None), ("POKE", None),
                                            ("DYNTEX", "ADVECT"), ("DYNTEX", "TWO_STREAM")])
def test_panel_shows_style_for_every_engine(sm, tmp_path, engine, method):
    plane = styled_plane(sm, tmp_path, engine, masks=[SKY], labels=["clouds"])
    settings = plane.stillmotion
    if method:
        settings.dyntex.method = method
    log = draw(sm)
    assert ("panel", "STILLMOTION_PT_style", True) in log
    assert ("label", "Style") in log
    assert ("operator", "image.open") in log
    # No painting yet: the settings are there, greyed out; Feather only for masks.
    assert style_widgets(log) == {"style_image": True, "style_strength": False,
                                  "style_where": False}
    settings.style_image = grid_painting()
    settings.style_where = "MASKS"
    log = draw(sm)
    assert ("label", "Style: painting") in log  # the header says a painting is set
    assert style_widgets(log) == {"style_image": True, "style_strength": True,
                                  "style_where": True, "style_feather": True}
    hint = any(e[0] == "label" and e[1].startswith("This engine uses only Static masks")
               for e in log)
    assert hint is (engine != "DYNTEX")
    assert not any(e[0] == "label" and e[1].startswith("Strength 0") for e in log)
    settings.style_strength = 0.0
    assert any(e[0] == "label" and e[1] == "Strength 0 leaves the still as it is"
               for e in draw(sm))
    # The two-stream style stream is another image, labelled as such, only for two-stream.
    stream = [e for e in log if e[0] == "owner" and e[1] == "StillMotionDyntexSettings"
              and e[2] == "style_image"]
    assert bool(stream) is (method == "TWO_STREAM")
    assert (("label", "Style Stream (two-stream)") in log) is (method == "TWO_STREAM")
