"""bpy <-> plain data: find the plane's still, read strokes, build the job, install the bake."""
