"""3D Viewport > Sidebar > StillMotion: everything an artist needs to go from strokes to a take.

draw() only reads: what to show is computed by small draw_* helpers, and every change goes
through an operator (so it can be undone) or a property widget.
"""

import textwrap

import bpy

from ..bake import library
from ..bake import session as bake_session
from ..properties import CLIP_LABEL
from ..scene.job import DYNTEX_PREVIEW

HAS_PROGRESS = "progress" in bpy.types.UILayout.bl_rna.functions  # Blender 4.0+
_CHARS_PER_PIXEL = 1 / 7.0  # rough width of a UI character, to wrap long messages
# Why a face-mesh model shows no Land Pokes Exactly or Snap to Face Parts.
MESH_HINT = ("Face mesh: pokes land exactly on the face's own landmarks, no snapping needed; "
             "a still without a face needs the Warp engine")


class STILLMOTION_UL_mask_labels(bpy.types.UIList):
    """One row per mask stroke (in stroke order) with its motion label."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.label(text=f"Mask {index + 1}", icon="MOD_MASK")
        row.prop(item, "label", text="")
        if item.label == CLIP_LABEL:
            row.prop(item, "clip_path", text="")


class VIEW3D_PT_stillmotion(bpy.types.Panel):
    bl_label = "StillMotion"
    bl_idname = "VIEW3D_PT_stillmotion"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "StillMotion"

    def draw(self, context):
        layout = self.layout
        plane = bake_session.plane_for(context)
        if plane is None:
            layout.label(text="Select an image plane", icon="INFO")
            self.draw_status(context, layout)
            return
        settings = plane.stillmotion
        self.draw_target(context, layout, plane)
        self.draw_strokes(context, layout, plane, settings)
        self.draw_motion(layout, settings)
        if settings.engine == "DYNTEX":
            self.draw_dyntex(context, layout, settings.dyntex)
        elif settings.engine == "POKE":
            self.draw_poke(context, layout, plane, settings.poke)
        self.draw_style(context, layout, settings)
        self.draw_output(layout, settings)
        self.draw_actions(context, layout)
        self.draw_status(context, layout)
        self.draw_take(layout, plane, settings)

    def draw_target(self, context, layout, plane):
        box = layout.box()
        box.label(text=plane.name, icon="MESH_PLANE")
        picture = _picture(plane)
        shown = picture.node.image if picture.node is not None else None
        if shown is None:
            _wrapped(box, "No image on this plane: import your picture with Add > Image > "
                     "Mesh Plane, or open it in the material's Image Texture node", "ERROR",
                     context)
            return
        still = plane.stillmotion.original_image
        if shown.source == "SEQUENCE" and still is not None:
            box.label(text=f"Still: {still.name}", icon="IMAGE_DATA")
            box.label(text=f"Showing: {shown.name}", icon="SEQUENCE")
        else:
            box.label(text=shown.name, icon="IMAGE_DATA")
        if len(picture.choices) > 1:
            box.prop(plane.stillmotion, "picture")
            if picture.ambiguous:
                _wrapped(box, f"'{picture.material.name}' has {len(picture.choices)} Image "
                         "Texture nodes feeding its colour: pick the one that shows your "
                         "picture", "ERROR", context)

    def draw_strokes(self, context, layout, plane, settings):
        col = layout.column()
        row = col.row(align=True)
        row.prop(settings, "strokes", text="")
        row.operator("stillmotion.add_strokes", text="" if settings.strokes else "Add Strokes",
                     icon="GREASEPENCIL")
        if settings.strokes is None:
            return
        header = col.row(align=True)
        header.label(text="Mask Labels")
        header.operator("stillmotion.sync_mask_labels", text="", icon="FILE_REFRESH")
        if len(settings.mask_labels):
            col.template_list("STILLMOTION_UL_mask_labels", "", settings, "mask_labels",
                              settings, "mask_labels_index", rows=2)
        else:
            col.label(text="No masks: draw closed shapes on the Masks layer")

    def draw_motion(self, layout, settings):
        col = layout.column(align=True)
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(settings, "engine")
        col.prop(settings, "frames")
        col.prop(settings, "fps")
        col.prop(settings, "seed")
        col.separator()
        if settings.engine == "WARP":
            col.prop(settings, "falloff")
            col.prop(settings, "feather")
            sub = col.column()
            sub.active = not settings.loop  # easing is ignored by a seamless loop
            sub.prop(settings, "easing")
        col.prop(settings, "loop")

    def draw_poke(self, context, layout, plane, poke):
        from ..bake import models
        from ..bake import poke as poke_runs

        box = layout.box()
        box.label(text="Sampled (iPOKE)", icon="OUTLINER_OB_FORCE_FIELD")
        row = box.row(align=True)
        row.prop(poke, "model", text="")
        row.operator("stillmotion.poke_refresh_models", text="", icon="FILE_REFRESH")
        path = models.model_path(context, poke.model_file)
        if not path.is_file():
            fix = ("reinstall or update the extension" if models.is_shipped_extra(poke.model_file)
                   else "train one below (Train from Clip)")
            _wrapped(box, f"This model file is not there: pick another model, or {fix}",
                     "ERROR", context)
        mesh = models.is_mesh_model(path)
        col = box.column(align=True)
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(poke, "samples")
        col.prop(poke, "temperature")
        col = box.column(align=True)
        if mesh:
            # Switches the engine would ignore are not offered (scene/job.py still writes them:
            # harmless, and a switch back to an iPOKE model finds them as the artist left them).
            _wrapped(box, MESH_HINT, "INFO", context)
        else:
            col.prop(poke, "guide")
            col.prop(poke, "snap")
        col.prop(poke, "background")
        _wrapped(box, "A click without a drag on the Pokes layer is a pin: that spot holds "
                 "still", "PINNED", context)
        row = box.row()
        row.scale_y = 1.3
        row.operator("stillmotion.poke_sample", icon="SEQ_STRIP_DUPLICATE")
        self.draw_poke_strip(context, box, plane, poke, poke_runs)
        self.draw_poke_train(context, layout, models, poke_runs)

    def draw_poke_strip(self, context, layout, plane, poke, poke_runs):
        strip = poke_runs.thumbnail_icons(poke)
        if not strip:
            layout.label(text=f"Bake renders sample {poke.sample + 1} (Sample shows them)")
            return
        grid = layout.grid_flow(columns=min(4, len(strip)), even_columns=True, align=True)
        for index, icon in strip:
            cell = grid.column(align=True)
            cell.template_icon(icon_value=icon, scale=3.0)
            pick = cell.operator("stillmotion.poke_pick", text=str(index + 1),
                                 depress=index == poke.sample)
            pick.index = index
        layout.label(text=f"Chosen: sample {poke.sample + 1} · made with "
                          f"{poke.thumbnails_made_with}", icon="RESTRICT_SELECT_OFF")
        if poke.thumbnails_key != poke_runs.strip_key(plane):
            _wrapped(layout, "Strokes or settings changed since these were made: Sample again "
                     "to see what Bake will render", "ERROR", context)
        rows = poke_runs.part_rows(plane)  # none once the pokes changed
        if rows:
            col = layout.column(align=True)
            for text, icon in rows:
                _wrapped(col, text, icon, context)

    def draw_poke_train(self, context, layout, models, poke_runs):
        header, body = layout.panel("STILLMOTION_PT_poke_train", default_closed=True)
        header.label(text="Train from Clip")
        if body is None:
            return
        train = context.scene.stillmotion_train
        col = body.column()
        col.template_ID(train, "clip", open="clip.open")
        sub = col.column()
        sub.active = train.clip is None  # a Movie Clip takes precedence
        sub.prop(train, "video_path")
        col = body.column(align=True)
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(train, "model_name")
        col.prop(train, "minutes")
        col.prop(train, "stride")
        col.prop(train, "face_crop")
        col.prop(train, "motion_space")
        col.prop(train, "face_parts")
        body.operator("stillmotion.poke_train", icon="EXPERIMENTAL")
        folder = models.models_folder(context, create=False)
        _wrapped(body, f"Models go to {folder}. {poke_runs.RESUME_NOTE}.", "INFO", context)

    def draw_dyntex(self, context, layout, dyntex):
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(dyntex, "method")
        if dyntex.method == "ADVECT":
            # Everything else in dyntex configures the two-stream method only, but for the
            # Working Size its refiner reads (scene/job.py writes both only when refining).
            col.prop(dyntex, "refine")
            if dyntex.refine > 0:
                col.prop(dyntex, "size")
            _wrapped(layout, "An arrow on the Pokes layer steers the region it starts in; a "
                     "click without a drag pins that spot", "FORCE_WIND", context)
            if dyntex.refine > 0:
                _wrapped(layout, "Each refine iteration takes about as long as a two-stream "
                         "one; a Preview does not refine", "TIME", context)
            self.draw_library(layout)
            return
        self.draw_library(layout)
        header, body = layout.panel("STILLMOTION_PT_dyntex_advanced", default_closed=True)
        header.label(text="Advanced")
        if body is None:
            return
        body.use_property_split = True
        body.use_property_decorate = False
        col = body.column(align=True)
        col.prop(dyntex, "size")
        col.prop(dyntex, "iterations")
        col.prop(dyntex, "levels")
        col.prop(dyntex, "optimizer")
        # The research method's own style stream (λ7), not the Style every engine applies.
        col = body.column()
        col.label(text="Style Stream (two-stream)")
        col.template_ID(dyntex, "style_image", open="image.open")
        col = body.column(align=True)
        col.prop(dyntex, "lambda_style", slider=True)
        col.prop(dyntex, "lambda_l2", slider=True)
        col.prop(dyntex, "lambda_app", slider=True)
        col.prop(dyntex, "lambda_dyn", slider=True)
        col.prop(dyntex, "motion_contrast", slider=True)
        sub = col.column(align=True)
        sub.active = dyntex.style_image is not None  # without a painting λ7 does nothing
        sub.prop(dyntex, "lambda_paint", slider=True)

    def draw_style(self, context, layout, settings):
        """Style, for every engine: the still takes on a painting's look, then moves."""
        header, body = layout.panel("STILLMOTION_PT_style", default_closed=True)
        painting = settings.style_image
        header.label(text=f"Style: {painting.name}" if painting is not None else "Style")
        if body is None:
            return
        body.template_ID(settings, "style_image", open="image.open")
        col = body.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.active = painting is not None  # without a painting nothing here applies
        col.prop(settings, "style_strength", slider=True)
        col.prop(settings, "style_where")
        if settings.style_where == "MASKS":
            col.prop(settings, "style_feather")
            if settings.engine in {"WARP", "POKE"}:
                _wrapped(body, "This engine uses only Static masks: the painting goes inside "
                         "those", "INFO", context)
        if painting is not None and settings.style_strength <= 0:
            _wrapped(body, "Strength 0 leaves the still as it is", "INFO", context)

    def draw_library(self, layout):
        header, body = layout.panel("STILLMOTION_PT_motion_library", default_closed=True)
        header.label(text="Motion Library")
        if body is None:
            return
        icons = library.icons()  # only while open: it looks for the thumbnail files
        if icons:
            grid = body.grid_flow(columns=2, even_columns=True, align=True)
            for name, icon in icons.items():
                cell = grid.column(align=True)
                cell.template_icon(icon_value=icon, scale=4.0)
                cell.label(text=name.title())
        if library.is_running():
            body.label(text="Making the thumbnails…", icon="TIME")
        elif len(icons) < len(library.NAMES):
            body.operator("stillmotion.motion_library", icon="IMAGE_DATA")

    def draw_output(self, layout, settings):
        col = layout.column(align=True)
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(settings, "output_format")
        if settings.engine == "DYNTEX" and settings.dyntex.method == "TWO_STREAM":
            # The two-stream preview is capped (scene/job.py), not sized by Preview Size.
            preview = DYNTEX_PREVIEW
            col.label(text=f"Preview: ≤{preview['size']} px, {preview['frames']} frames, "
                           f"{preview['iterations']} iterations", icon="INFO")
        else:
            col.prop(settings, "preview_size")

    def draw_actions(self, context, layout):
        running = bake_session.is_running()
        row = layout.row(align=True)
        row.scale_y = 1.4
        if running:
            row.operator("stillmotion.cancel", text="Cancel", icon="CANCEL")
            return
        row.operator("stillmotion.bake", text="Preview", icon="HIDE_OFF").preview = True
        row.operator("stillmotion.bake", text="Bake", icon="RENDER_ANIMATION").preview = False

    def draw_status(self, context, layout):
        runtime = context.window_manager.stillmotion
        if runtime.running:
            text = f"{runtime.plane_name}: {runtime.message or 'baking'}"
            if HAS_PROGRESS:
                layout.progress(factor=runtime.progress, type="BAR", text=text)
            else:
                layout.label(text=f"{text} ({runtime.progress * 100:.0f}%)", icon="TIME")
        elif runtime.message and runtime.stage == "done":
            _wrapped(layout, runtime.message, "CHECKMARK", context)
        if runtime.last_error:
            _wrapped(layout, runtime.last_error, "ERROR", context)
        if runtime.last_warning:
            _wrapped(layout, runtime.last_warning, "INFO", context)

    def draw_take(self, layout, plane, settings):
        if settings.take == 0 and settings.original_image is None:
            return
        row = layout.row(align=True)
        if settings.take:
            row.label(text=f"Take {settings.take}", icon="SEQUENCE")
        row.operator("stillmotion.revert_to_still", icon="LOOP_BACK")


def _picture(plane):
    """The plane's picture node (and the others to pick from), looked up cheaply (no file
    access: draw runs on every redraw). The full checks with their messages run when Bake is
    pressed."""
    from ..scene.plane import find_picture

    return find_picture(plane)


def _wrapped(layout, text, icon, context):
    """A long message over several labels, wrapped to the sidebar's width."""
    width = context.region.width if context.region else 300
    chars = max(20, int(width * _CHARS_PER_PIXEL) - 4)
    col = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, chars) or [""]):
        col.label(text=line, icon=icon if i == 0 else "BLANK1")


classes = (STILLMOTION_UL_mask_labels, VIEW3D_PT_stillmotion)
