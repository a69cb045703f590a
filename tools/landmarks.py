#!/usr/bin/env python3
"""Writes a 68-point landmark sidecar CSV for every image under a folder, with dlib's HOG face
detector and its 68-point shape predictor (the tool the paper used, section 3.2).

The CSV is what `fer-cbam ... --landmarks-csv` reads:

    file,x0,y0,x1,y1,...,x67,y67,flagged

`file` is the image's path relative to the folder (forward slashes), points are in the
original image's pixels, and flagged=1 marks an image where no face was found: the predictor
was then fitted to the whole image rectangle, which for tight face crops (CK+48, FER2013) is
close to the face box anyway, but is a guess.

Setup (no compiler needed, both are wheels on PyPI):

    pip install dlib-bin face-recognition-models pillow numpy

`face-recognition-models` ships shape_predictor_68_face_landmarks.dat; --predictor overrides.

Small images (48x48) are far below the HOG detector's ~80 px minimum face, so each image is
scaled up (bicubic) until its shorter side is at least --min-side, and given a margin
(--pad, replicated edge pixels) so a face that fills the whole crop still has the context the
detector's window expects. Landmarks are mapped back to the original pixels.
"""

import argparse
import os
import sys
import tempfile
import time

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
POINTS = 68


def fail(message):
    print(f"landmarks.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Write a file,x0,y0,...,x67,y67,flagged landmark CSV for every image "
        "under FOLDER, with dlib's HOG face detector and 68-point shape predictor.",
        epilog="Example: python3 tools/landmarks.py /data/ckplus --out /data/landmarks/ckplus.csv",
    )
    p.add_argument("folder", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="CSV to write (written whole or not at all)")
    p.add_argument(
        "--predictor",
        help="shape_predictor_68_face_landmarks.dat (default: the one face-recognition-models ships)",
    )
    p.add_argument(
        "--min-side",
        type=int,
        default=192,
        help="scale images up until their shorter side is at least this many pixels "
        "before detecting (default 192; 48x48 crops become 192x192)",
    )
    p.add_argument(
        "--pad",
        type=float,
        default=0.25,
        help="margin added on each side before detecting, as a fraction of the scaled image "
        "(default 0.25); helps on crops the face fills entirely",
    )
    p.add_argument(
        "--upsample",
        type=int,
        default=0,
        help="extra pyramid upsamplings inside dlib's detector (default 0; each is ~4x slower)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    a = p.parse_args(argv)
    if a.min_side < 1:
        p.error("--min-side must be at least 1")
    if not 0 <= a.pad <= 2:
        p.error("--pad must be between 0 and 2")
    if a.upsample < 0:
        p.error("--upsample must be 0 or more")
    return a


def load_modules():
    try:
        import dlib  # noqa: F401
        import numpy  # noqa: F401
        from PIL import Image  # noqa: F401
    except ImportError as e:
        fail(f"{e}: install with `pip install dlib-bin face-recognition-models pillow numpy`")
    import dlib
    import numpy
    from PIL import Image

    return dlib, numpy, Image


def predictor_path(given):
    if given:
        if not os.path.isfile(given):
            fail(f"{given}: predictor file does not exist")
        return given
    try:
        import face_recognition_models
    except ImportError:
        fail(
            "no --predictor given and face_recognition_models is not installed: "
            "`pip install face-recognition-models` ships shape_predictor_68_face_landmarks.dat"
        )
    path = face_recognition_models.pose_predictor_model_location()
    if not os.path.isfile(path):
        fail(f"{path}: face_recognition_models' predictor file is missing")
    return path


def images_under(folder):
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(dirpath, f), folder))
    return sorted(p.replace(os.sep, "/") for p in found)


def landmarks_of(img, detector, predictor, dlib, numpy, Image, a):
    """68 (x, y) in the original image's pixels and whether the face was not found."""
    gray = img.convert("L")
    w, h = gray.size
    scale = max(1.0, a.min_side / min(w, h))
    sw, sh = round(w * scale), round(h * scale)
    big = gray.resize((sw, sh), Image.BICUBIC) if (sw, sh) != (w, h) else gray
    arr = numpy.asarray(big, dtype=numpy.uint8)
    pad = round(a.pad * max(sw, sh))
    if pad > 0:
        arr = numpy.pad(arr, pad, mode="edge")
    arr = numpy.ascontiguousarray(arr)
    faces = detector(arr, a.upsample)
    if len(faces) > 0:
        rect = max(faces, key=lambda r: r.area())
        flagged = 0
    else:
        rect = dlib.rectangle(pad, pad, pad + sw - 1, pad + sh - 1)
        flagged = 1
    shape = predictor(arr, rect)
    pts = [
        ((shape.part(i).x - pad) / scale, (shape.part(i).y - pad) / scale) for i in range(POINTS)
    ]
    return pts, flagged


def main(argv=None):
    a = parse_args(argv)
    if not os.path.isdir(a.folder):
        fail(f"{a.folder}: not a folder")
    out_dir = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(out_dir):
        fail(f"{a.out}: its folder {out_dir} does not exist")
    dlib, numpy, Image = load_modules()
    model = predictor_path(a.predictor)
    files = images_under(a.folder)
    if not files:
        fail(f"{a.folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(model)

    start = time.time()
    rows, found, flagged, unreadable = [], 0, 0, []
    for k, rel in enumerate(files):
        try:
            with Image.open(os.path.join(a.folder, rel)) as img:
                img.load()
                pts, flag = landmarks_of(img, detector, predictor, dlib, numpy, Image, a)
        except (OSError, ValueError) as e:
            unreadable.append(f"{rel}: {e}")
            continue
        if "," in rel or '"' in rel:
            rel = '"' + rel.replace('"', '""') + '"'
        rows.append(rel + "," + ",".join(f"{x:.2f},{y:.2f}" for x, y in pts) + f",{flag}")
        flagged += flag
        found += 1 - flag
        if not a.quiet and (k + 1) % 200 == 0:
            print(f"{k + 1}/{len(files)} images, {flagged} without a face found", file=sys.stderr)
    header = "file," + ",".join(f"x{i},y{i}" for i in range(POINTS)) + ",flagged"
    # Written to a temporary file and renamed, so a failed run never leaves half a CSV.
    fd, tmp = tempfile.mkstemp(prefix=".landmarks-", suffix=".csv", dir=out_dir)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(header + "\n")
            for r in rows:
                f.write(r + "\n")
        os.replace(tmp, a.out)
    except BaseException:
        os.unlink(tmp)
        raise
    took = time.time() - start
    print(
        f"{a.out}: {len(rows)} images, face found in {found}, flagged (no face, whole image) "
        f"{flagged}, {len(unreadable)} unreadable; {took:.1f} s",
        file=sys.stderr,
    )
    for u in unreadable:
        print(f"  unreadable: {u}", file=sys.stderr)
    return 1 if unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
