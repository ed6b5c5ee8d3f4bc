"""Grease-pencil strokes over the image plane: create the strokes object, read and write
strokes, and project world points into image pixels.

Grease pencil changed under us twice (docs/ARCHITECTURE.md, Blender notes):
- 4.2: object type GPENCIL (legacy): layer.frames[..].strokes[..].points[..].co, layer
  transform layer.matrix_layer, stroke width = line_width × pressure / 2000 (world units × the
  object's scale).
- 4.3+: object type GREASEPENCIL (GPv3; data type GreasePencilv3 in 4.3–4.5, GreasePencil in
  5.x): layer.get_frame_at(n).drawing, whose attributes hold "position" and "radius" per point
  and "cyclic" per stroke; layer transform layer.matrix_local.
Everything version-specific stays in this module; callers get plain NumPy arrays in world space.
"""

from dataclasses import dataclass

import bpy
import mathutils
import numpy as np
from mathutils.bvhtree import BVHTree

from .errors import StillMotionError

STROKES_NAME = "StillMotion Strokes"
POKES = "Pokes"
MASKS = "Masks"
LAYERS = (POKES, MASKS)

# Layer colours: the strokes read as pokes or masks at a glance, whatever material they use.
LAYER_COLORS = {
    POKES: (1.0, 0.42, 0.0, 1.0),  # orange
    MASKS: (0.0, 0.85, 1.0, 1.0),  # cyan
}
LAYER_MATERIALS = {POKES: "StillMotion Poke", MASKS: "StillMotion Mask"}

# GPv3 per-point radius when a drawing has no "radius" attribute (Blender's own default).
DEFAULT_RADIUS = 0.01
# Legacy line_width is a "pixel" diameter; Blender converts it to a world radius with this.
LEGACY_RADIUS_FACTOR = 1.0 / 2000.0
# Strokes sit this fraction of the plane's size in front of it: enough to never z-fight,
# too little to shift a stroke visibly when the plane is seen at an angle.
FRONT_OFFSET = 1e-4


@dataclass
class Stroke:
    """One stroke in world space."""

    points: np.ndarray  # (N, 3) float64 world
    radii: np.ndarray  # (N,) float64 world units (half the drawn width)
    cyclic: bool
    index: int  # position in its layer's frame, 0-based


def is_grease_pencil(obj) -> bool:
    return obj is not None and obj.type in {"GPENCIL", "GREASEPENCIL"}


def _is_legacy(gp_obj) -> bool:
    return gp_obj.type == "GPENCIL"


def _new_gp_data(name):
    # 4.3–4.5 keep GPv3 in its own collection; 4.2 (legacy) and 5.x use grease_pencils.
    if hasattr(bpy.data, "grease_pencils_v3"):
        return bpy.data.grease_pencils_v3.new(name)
    return bpy.data.grease_pencils.new(name)


def _matrix(m) -> np.ndarray:
    return np.array(m, dtype=np.float64)


def _transform(m4: np.ndarray, points: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # NaN points stay NaN; job.py reports them
        return points @ m4[:3, :3].T + m4[:3, 3]


def _matrix_world(obj):
    """obj's world matrix as the depsgraph last evaluated it; right after a script moved an
    object, obj.matrix_world is stale until the view layer updates, so update it first."""
    view_layer = getattr(bpy.context, "view_layer", None)
    if view_layer is not None:
        view_layer.update()
    return obj.matrix_world.copy()


def _layer(gp_obj, name):
    return gp_obj.data.layers.get(name)


def layer_visible(layer) -> bool:
    if layer.hide:
        return False
    group = getattr(layer, "parent_group", None)  # GPv3 layer groups
    while group is not None:
        if group.hide:
            return False
        group = getattr(group, "parent_group", None)
    return True


def layer_to_world(gp_obj, layer) -> np.ndarray:
    """4×4 matrix taking the layer's stored point coordinates to world space."""
    obj_m = _matrix(_matrix_world(gp_obj))
    if _is_legacy(gp_obj):
        local = _matrix(layer.matrix_layer)
        if layer.parent is None:
            return obj_m @ local
        # Legacy layer parenting (BKE_gpencil_layer_transform_matrix_get): the parent's matrix
        # times the stored inverse, moved by the object's own translation.
        m = _matrix(layer.parent.matrix_world) @ _matrix(layer.matrix_inverse)
        m[:3, 3] += obj_m[:3, 3]
        return m @ local
    local = _matrix(layer.matrix_local)
    if layer.parent is None:
        return obj_m @ local
    # GPv3 (Layer::to_world_space): parent world × parent inverse × local.
    return _matrix(layer.parent.matrix_world) @ _matrix(layer.matrix_parent_inverse) @ local


def _scene_frame(frame):
    return bpy.context.scene.frame_current if frame is None else int(frame)


def _legacy_frame_at(layer, frame):
    best = None
    for fr in layer.frames:
        if fr.frame_number <= frame and (best is None or fr.frame_number > best.frame_number):
            best = fr
    return best


def _frame_at(gp_obj, layer, frame, create=False):
    frame = _scene_frame(frame)
    if _is_legacy(gp_obj):
        found = _legacy_frame_at(layer, frame)
        if found is None and create:
            found = layer.frames.new(frame)
        return found
    found = layer.get_frame_at(frame)
    if found is None and create:
        found = layer.frames.new(frame)
    return found


def _attribute_array(attributes, name, field, count, width, dtype=np.float32):
    attr = attributes.get(name)
    if attr is None:
        return None
    out = np.empty(count * width, dtype)
    attr.data.foreach_get(field, out)
    return out.reshape(count, width) if width > 1 else out


def _object_scale(m4: np.ndarray) -> float:
    """Mean length of the matrix's axes: how much it scales a stroke's width."""
    return float(np.mean(np.linalg.norm(m4[:3, :3], axis=0)))


def read_stroke_data(gp_obj, layer_name, frame=None, include_hidden=False) -> list:
    """Strokes of one layer at a frame (default: the scene's current frame) in world space, as
    Stroke objects. A missing layer, a hidden one (unless include_hidden), or no keyframe at or
    before the frame gives []."""
    layer = _layer(gp_obj, layer_name)
    if layer is None or not (include_hidden or layer_visible(layer)):
        return []
    fr = _frame_at(gp_obj, layer, frame)
    if fr is None:
        return []
    m = layer_to_world(gp_obj, layer)
    scale = _object_scale(m)
    out = []
    if _is_legacy(gp_obj):
        for i, stroke in enumerate(fr.strokes):
            n = len(stroke.points)
            co = np.empty(n * 3, np.float32)
            stroke.points.foreach_get("co", co)
            pressure = np.empty(n, np.float32)
            stroke.points.foreach_get("pressure", pressure)
            width = max(stroke.line_width + layer.line_change, 0)
            radii = pressure.astype(np.float64) * width * LEGACY_RADIUS_FACTOR * scale
            points = _transform(m, co.reshape(n, 3).astype(np.float64))
            out.append(Stroke(points, radii, bool(stroke.use_cyclic), i))
        return out
    drawing = fr.drawing
    if drawing is None:
        return []
    attrs = drawing.attributes
    n_curves = attrs.domain_size("CURVE")
    if n_curves == 0:
        return []  # (an empty drawing still reports one curve offset but reads none)
    offsets = np.empty(n_curves + 1, np.int32)
    drawing.curve_offsets.foreach_get("value", offsets)
    n_points = int(offsets[-1])
    pos = _attribute_array(attrs, "position", "vector", n_points, 3)
    radius = _attribute_array(attrs, "radius", "value", n_points, 1)
    if radius is None:
        radius = np.full(n_points, DEFAULT_RADIUS, np.float32)
    cyclic = _attribute_array(attrs, "cyclic", "value", n_curves, 1, dtype=bool)
    if cyclic is None:
        cyclic = np.zeros(n_curves, bool)
    world = _transform(m, pos.astype(np.float64))
    radius = radius.astype(np.float64) * scale
    for i in range(n_curves):
        a, b = int(offsets[i]), int(offsets[i + 1])
        out.append(Stroke(world[a:b], radius[a:b], bool(cyclic[i]), i))
    return out


def read_strokes(gp_obj, layer_name, frame=None) -> list:
    """World-space points (N, 3) of each stroke on the layer at the frame (default: current)."""
    return [s.points for s in read_stroke_data(gp_obj, layer_name, frame)]


# -- writing --------------------------------------------------------------------------------------


def _material_index(gp_obj, layer_name):
    wanted = LAYER_MATERIALS.get(layer_name)
    for i, mat in enumerate(gp_obj.data.materials):
        if mat is not None and mat.name == wanted:
            return i
    return 0


def _fill_new(attrs, name, domain, kind, default, start, count_total, field="value"):
    """Set the values of an existing attribute from start to its end (the new strokes/points)
    to default; Blender leaves them 0, which for opacity-like attributes means invisible."""
    attr = attrs.get(name)
    if attr is None or attr.domain != domain:
        return
    vals = np.empty(count_total, np.float32 if kind == "FLOAT" else np.int32)
    attr.data.foreach_get(field, vals)
    vals[start:] = default
    attr.data.foreach_set(field, vals)


def _ensure_attribute(attrs, name, kind, domain, default, size):
    attr = attrs.get(name)
    if attr is None:
        attr = attrs.new(name, kind, domain)
        if default:
            dtype = bool if kind == "BOOLEAN" else (np.int32 if kind == "INT" else np.float32)
            attr.data.foreach_set("value", np.full(size, default, dtype))
    return attr


def add_stroke(gp_obj, layer_name, world_points, radius=0.02, cyclic=None, frame=None) -> int:
    """Append a stroke through world_points (N, 3) to the layer at the frame (default: the
    keyframe shown at the current frame, created if the layer has none). radius is the stroke's
    half-width in world units. cyclic=None closes strokes on the Masks layer and leaves others
    open. Returns the stroke's index in its frame. Used by tests and the demo: the artist draws."""
    pts = np.asarray(world_points, np.float64).reshape(-1, 3)
    if len(pts) == 0:
        raise ValueError("a stroke needs at least one point")
    if cyclic is None:
        cyclic = layer_name == MASKS
    layer = _layer(gp_obj, layer_name)
    if layer is None:
        layer = gp_obj.data.layers.new(layer_name)
    fr = _frame_at(gp_obj, layer, frame, create=True)
    m = layer_to_world(gp_obj, layer)
    inv = np.linalg.inv(m)
    local = _transform(inv, pts).astype(np.float32)
    scale = _object_scale(m) or 1.0
    local_radius = float(radius) / scale
    n = len(pts)
    mat_index = _material_index(gp_obj, layer_name)
    if _is_legacy(gp_obj):
        stroke = fr.strokes.new()
        stroke.display_mode = "3DSPACE"
        # line_width is an integer "pixel" diameter in 1..1000.
        stroke.line_width = min(max(1, int(round(local_radius / LEGACY_RADIUS_FACTOR))), 1000)
        stroke.material_index = mat_index
        stroke.use_cyclic = bool(cyclic)
        stroke.points.add(n)
        stroke.points.foreach_set("co", local.ravel())
        # Pressure carries what line_width (an integer) cannot: the exact radius.
        pressure = local_radius / (stroke.line_width * LEGACY_RADIUS_FACTOR)
        stroke.points.foreach_set("pressure", np.full(n, pressure, np.float32))
        stroke.points.foreach_set("strength", np.ones(n, np.float32))
        gp_obj.data.update_tag()
        return len(fr.strokes) - 1
    drawing = fr.drawing
    attrs = drawing.attributes
    old_points = attrs.domain_size("POINT")
    old_curves = attrs.domain_size("CURVE")
    drawing.add_strokes([n])
    total_points = old_points + n
    pos = np.empty(total_points * 3, np.float32)
    attrs["position"].data.foreach_get("vector", pos)
    pos[old_points * 3:] = local.ravel()
    attrs["position"].data.foreach_set("vector", pos)
    rad = _ensure_attribute(attrs, "radius", "FLOAT", "POINT", DEFAULT_RADIUS, total_points)
    values = np.empty(total_points, np.float32)
    rad.data.foreach_get("value", values)
    values[old_points:] = local_radius
    rad.data.foreach_set("value", values)
    for name, default in (("opacity", 1.0),):
        _fill_new(attrs, name, "POINT", "FLOAT", default, old_points, total_points)
    for name, default in (("fill_opacity", 1.0), ("u_scale", 1.0), ("aspect_ratio", 1.0)):
        _fill_new(attrs, name, "CURVE", "FLOAT", default, old_curves, old_curves + 1)
    if cyclic or attrs.get("cyclic") is not None:
        cyc = _ensure_attribute(attrs, "cyclic", "BOOLEAN", "CURVE", False, old_curves + 1)
        flags = np.empty(old_curves + 1, bool)
        cyc.data.foreach_get("value", flags)
        flags[old_curves] = bool(cyclic)
        cyc.data.foreach_set("value", flags)
    if mat_index or attrs.get("material_index") is not None:
        mat = _ensure_attribute(attrs, "material_index", "INT", "CURVE", 0, old_curves + 1)
        idx = np.empty(old_curves + 1, np.int32)
        mat.data.foreach_get("value", idx)
        idx[old_curves] = mat_index
        mat.data.foreach_set("value", idx)
    if hasattr(drawing, "tag_positions_changed"):
        drawing.tag_positions_changed()
    gp_obj.data.update_tag()
    return old_curves


# -- the strokes object ---------------------------------------------------------------------------


def _gp_material(name, color, fill):
    mat = bpy.data.materials.get(name)
    if mat is None or not mat.is_grease_pencil:
        mat = bpy.data.materials.new(name)
        bpy.data.materials.create_gpencil_data(mat)
    style = mat.grease_pencil
    style.color = color
    style.show_stroke = True
    if fill:
        # Masks show their area as a light tint over the picture.
        style.show_fill = True
        style.fill_color = (color[0], color[1], color[2], 0.25)
    return mat


def _plane_frame(plane):
    """(origin, x axis, normal, size) of the plane in world space: the centre of its mesh
    bounds, its local X direction flattened onto the surface, its area-weighted mean face
    normal, and its largest world dimension."""
    mw = _matrix(_matrix_world(plane))
    mesh = plane.data
    mesh.calc_loop_triangles()
    n_v, n_t = len(mesh.vertices), len(mesh.loop_triangles)
    if n_t == 0:
        raise StillMotionError(f"'{plane.name}' has no faces to draw on: select the image plane")
    co = np.empty(n_v * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    world = _transform(mw, co.reshape(n_v, 3).astype(np.float64))
    tris = np.empty(n_t * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    t = world[tris.reshape(n_t, 3)]
    # Summing world-space triangle cross products weighs each face by its world area.
    normal = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]).sum(axis=0)
    length = np.linalg.norm(normal)
    z_axis = mw[:3, 2] / max(np.linalg.norm(mw[:3, 2]), 1e-12)
    normal = normal / length if length > 1e-12 else z_axis
    x_axis = mw[:3, 0] - normal * np.dot(mw[:3, 0], normal)
    if np.linalg.norm(x_axis) < 1e-9:
        x_axis = np.cross(mw[:3, 1], normal)
    x_axis = x_axis / np.linalg.norm(x_axis)
    lo, hi = world.min(axis=0), world.max(axis=0)
    size = float(np.max(hi - lo)) or 1.0
    return (lo + hi) / 2, x_axis, normal, size


def _placement_matrix(plane):
    """World matrix for the strokes object: origin just in front of the plane's centre, local
    Z along the plane's normal, unit scale (so stroke widths are world widths)."""
    center, x_axis, normal, size = _plane_frame(plane)
    y_axis = np.cross(normal, x_axis)
    m = mathutils.Matrix.Identity(4)
    for r in range(3):
        m[r][0], m[r][1], m[r][2] = x_axis[r], y_axis[r], normal[r]
        m[r][3] = center[r] + normal[r] * size * FRONT_OFFSET
    return m


def _ensure_layers(gp_obj):
    data = gp_obj.data
    for name in LAYERS:
        layer = data.layers.get(name)
        if layer is None:
            layer = data.layers.new(name)
        layer.tint_color = LAYER_COLORS[name][:3]
        layer.tint_factor = 1.0
        if _frame_at(gp_obj, layer, None) is None:
            # The draw tool needs a keyframe at or before the current frame; put it at the
            # scene start so strokes show on every frame of the clip.
            scene = bpy.context.scene
            _frame_at(gp_obj, layer, min(scene.frame_start, scene.frame_current), create=True)
    data.layers.active = data.layers[POKES]


def _ensure_materials(gp_obj):
    mats = gp_obj.data.materials
    for name in LAYERS:
        mat = _gp_material(LAYER_MATERIALS[name], LAYER_COLORS[name], fill=name == MASKS)
        if all(m is None or m.name != mat.name for m in mats):
            mats.append(mat)


def _set_drawing_placement(scene):
    """Draw on the strokes object's local XY plane through its origin: the plane's surface."""
    ts = scene.tool_settings
    ts.gpencil_stroke_placement_view3d = "ORIGIN"
    ts.gpencil_sculpt.lock_axis = "AXIS_Z"


def ensure_strokes_object(context, plane):
    """The plane's "StillMotion Strokes" grease-pencil object with Pokes and Masks layers,
    created on first use, reused after (layers, materials and placement are repaired).

    It is parented to the plane, sits just in front of it facing the same way, draws in front
    of everything, and the scene's drawing placement is set to its local XY plane, so what the
    artist draws lands on the picture."""
    settings = plane.stillmotion
    gp_obj = settings.strokes
    if gp_obj is not None and (not is_grease_pencil(gp_obj) or gp_obj.name not in bpy.data.objects):
        gp_obj = None
    if gp_obj is None:
        data = _new_gp_data(STROKES_NAME)
        gp_obj = bpy.data.objects.new(STROKES_NAME, data)
        gp_obj.matrix_world = _placement_matrix(plane)
        gp_obj.parent = plane
        # Keep the placement while following the plane from now on.
        gp_obj.matrix_parent_inverse = _matrix_world(plane).inverted_safe()
        settings.strokes = gp_obj
        # Guides, not artwork: the strokes must never show up in the final render.
        gp_obj.hide_render = True
    collections = plane.users_collection or (context.scene.collection,)
    if not any(gp_obj.name in c.objects for c in collections):
        collections[0].objects.link(gp_obj)
    gp_obj.show_in_front = True
    _ensure_materials(gp_obj)
    _ensure_layers(gp_obj)
    _set_drawing_placement(context.scene)
    context.view_layer.update()
    return gp_obj


# -- projection onto the image ------------------------------------------------------------------


class PlaneProjector:
    """Maps world points to image pixels through the plane's world-space triangles and UVs.

    Each point goes to the triangle nearest to it (BVH), is projected onto that triangle's
    plane along its normal, and takes the UV its barycentric coordinates give. The barycentric
    coordinates are not clamped, so points beyond the mesh's edge extrapolate the nearest
    triangle's UV map: a mask reaching off the plane keeps its true outline and is clipped
    by rasterising, not bent onto the edge. For a flat plane with affine UVs (Import Images as
    Planes, any quad plane) this is exact for every point."""

    def __init__(self, plane, image_size, uv_map=""):
        self.width, self.height = (int(v) for v in image_size)
        mw = _matrix(_matrix_world(plane))
        depsgraph = bpy.context.evaluated_depsgraph_get()
        evaluated = plane.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        try:
            uv_layers = mesh.uv_layers
            layer = uv_layers.get(uv_map) if uv_map else None
            if layer is None:
                layer = next((u for u in uv_layers if u.active_render), uv_layers.active)
            if layer is None:
                raise StillMotionError(
                    f"'{plane.name}' has no UV map: unwrap it (Edit Mode, U › Unwrap) or "
                    "import the picture with Images as Planes")
            mesh.calc_loop_triangles()
            n_v, n_t, n_l = len(mesh.vertices), len(mesh.loop_triangles), len(mesh.loops)
            co = np.empty(n_v * 3, np.float32)
            mesh.vertices.foreach_get("co", co)
            verts = _transform(mw, co.reshape(n_v, 3).astype(np.float64))
            tri_v = np.empty(n_t * 3, np.int32)
            mesh.loop_triangles.foreach_get("vertices", tri_v)
            tri_l = np.empty(n_t * 3, np.int32)
            mesh.loop_triangles.foreach_get("loops", tri_l)
            uv = np.empty(n_l * 2, np.float32)
            layer.data.foreach_get("uv", uv)
        finally:
            evaluated.to_mesh_clear()
        if n_t == 0:
            raise StillMotionError(f"'{plane.name}' has no faces to show a picture on")
        tri_v = tri_v.reshape(n_t, 3)
        self.tri = verts[tri_v]  # (T, 3 corners, xyz)
        self.tri_uv = uv.reshape(n_l, 2).astype(np.float64)[tri_l.reshape(n_t, 3)]
        self.bvh = BVHTree.FromPolygons(
            [tuple(v) for v in verts], [tuple(t) for t in tri_v.tolist()], all_triangles=True
        )

    def _nearest_triangles(self, points):
        out = np.zeros(len(points), np.int64)
        for i, p in enumerate(points):
            _, _, index, _ = self.bvh.find_nearest(mathutils.Vector(p))
            out[i] = index if index is not None else 0
        return out

    def _barycentric(self, points, tris):
        a, b, c = self.tri[tris, 0], self.tri[tris, 1], self.tri[tris, 2]
        e1, e2, d = b - a, c - a, points - a
        d11 = np.einsum("ij,ij->i", e1, e1)
        d12 = np.einsum("ij,ij->i", e1, e2)
        d22 = np.einsum("ij,ij->i", e2, e2)
        dp1 = np.einsum("ij,ij->i", d, e1)
        dp2 = np.einsum("ij,ij->i", d, e2)
        denom = d11 * d22 - d12 * d12
        denom = np.where(np.abs(denom) > 0, denom, 1.0)  # degenerate triangle: corner a
        w1 = (d22 * dp1 - d12 * dp2) / denom
        w2 = (d11 * dp2 - d12 * dp1) / denom
        return np.stack([1 - w1 - w2, w1, w2], axis=1)

    def project(self, world_points):
        """-> (pixels (N, 2) float64, inside (N,) bool, triangle (N,) int). inside: the point
        lands on the mesh and on the image (UV within 0..1)."""
        pts = np.asarray(world_points, np.float64).reshape(-1, 3)
        if len(pts) == 0:
            return np.zeros((0, 2)), np.zeros(0, bool), np.zeros(0, np.int64)
        tris = self._nearest_triangles(pts)
        w = self._barycentric(pts, tris)
        uv = np.einsum("ik,ikj->ij", w, self.tri_uv[tris])
        pixels = np.stack([uv[:, 0] * self.width, (1.0 - uv[:, 1]) * self.height], axis=1)
        eps = 1e-6
        on_mesh = (w >= -eps).all(axis=1)
        on_image = ((uv >= -eps) & (uv <= 1 + eps)).all(axis=1)
        return pixels, on_mesh & on_image, tris

    def pixels_per_unit(self, tris) -> np.ndarray:
        """Image pixels per world unit along the surface of each triangle (geometric mean of
        the two directions: the square root of the area ratio)."""
        t = self.tri[tris]
        cross = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
        world_area = np.linalg.norm(cross, axis=1)
        px = self.tri_uv[tris] * np.array([self.width, self.height])
        e1, e2 = px[:, 1] - px[:, 0], px[:, 2] - px[:, 0]
        pixel_area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
        return np.sqrt(pixel_area / np.where(world_area > 0, world_area, np.inf))


def project_to_image(plane, image_size, world_points, uv_map=""):
    """World points (N, 3) -> (pixels (N, 2) float, inside (N,) bool) in the image's pixel
    coordinates (docs/JOB.md: x right, y down, origin at the top-left corner): x = u·W,
    y = (1 − v)·H of the UV under each point. Points off the plane extrapolate and are
    reported outside."""
    pixels, inside, _ = PlaneProjector(plane, image_size, uv_map).project(world_points)
    return pixels, inside
