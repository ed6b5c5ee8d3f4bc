"""Build and validate the installable extension zip with Blender's own extension tool.

The tool (`blender_ext.py`) ships inside Blender and inside the bpy wheel, and runs as a plain
script, so no Blender binary is needed. Run with a Python whose site-packages has the bpy wheel:

    .venv-bpy-5.0.1/bin/python tools/build_extension.py --out dist
"""

import argparse
import importlib.util
import pathlib
import subprocess
import sys
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]


def blender_ext_script() -> pathlib.Path:
    # Locate without importing bpy: importing starts a whole Blender just to find a file.
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: the bpy wheel is not installed in this Python; run `make extension`")
    bpy_dir = pathlib.Path(next(iter(spec.submodule_search_locations)))
    found = sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        sys.exit(f"error: blender_ext.py not found under {bpy_dir}; is this a bpy >= 4.2 wheel?")
    return found[-1]


def build(out_dir: pathlib.Path) -> pathlib.Path:
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text(encoding="utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tool = [sys.executable, str(blender_ext_script())]
    subprocess.run(tool + ["validate", str(REPO)], check=True)
    subprocess.run(tool + ["build", "--source-dir", str(REPO), "--output-filepath", str(zip_path)],
                   check=True)
    subprocess.run(tool + ["validate", str(zip_path)], check=True)
    return zip_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "dist"), help="folder for the zip")
    print(build(pathlib.Path(parser.parse_args().out).resolve()))


if __name__ == "__main__":
    main()
