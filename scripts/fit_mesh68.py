"""Fit the face mesh's 468 -> 68 map against dlib's points and choose what the landmarker ships.

    python scripts/fit_mesh68.py                  # fit, compare, write the map and its report
    python scripts/fit_mesh68.py --crops 24 /tmp/crops.npy   # real crops for convert_face_mesh

On ``../shared/data/celeba_faces``: CenterFace finds each labelled face (as in the pipeline),
the mesh runs on its box; dlib's 68 points on the labelled HOG box are the reference. The map is
fitted on the tune identities of ``ciagan eval``'s fixed split and measured on the held-out ones
(error: mean point distance / outer-eye distance, medians). It is a ridge regression towards the
usual index table in the face's upright frame (``mesh.PointMap``). The table and the fitted map,
with and without the refining pass, are also scored by what CIAGAN sees: the mask IoU against
the published masks of ``ciagan_sample`` (the CenterFace box, as in the pipeline). The best by
that IoU is written as ``mesh68_map.npz``, with ``mesh68_map.json`` (the whole comparison),
beside the ONNX model.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ciagan_core.alignment import render_mask_image  # noqa: E402
from ciagan_core.detection import create_detector  # noqa: E402
from ciagan_core.evaluation.dataset import holdout_identity  # noqa: E402
from ciagan_core.faces import FaceBox, box_iou  # noqa: E402
from ciagan_core.landmarks.dlib68 import DlibLandmarker  # noqa: E402
from ciagan_core.landmarks.mesh import (  # noqa: E402
    MODEL_DIR,
    MeshLandmarker,
    PointMap,
    box_roi,
    canonical_frame,
    cut_crop,
    roi_transform,
    rotate,
)

SHARED = ROOT.parent / "shared" / "data"
GROUPS = {
    "jaw": slice(0, 17),
    "brows": slice(17, 27),
    "nose": slice(27, 36),
    "eyes": slice(36, 48),
    "mouth": slice(48, 68),
}
#: Chosen on the tune identities (0.1, 1, 10, 100 tried; smaller fits better, 0.1 is where the
#: held-out error stops improving). Adding the mesh's z did not help (0.0272 vs 0.0271).
RIDGE = 0.1


def errors(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-face mean point distance / outer-eye distance ([N])."""
    eye = np.linalg.norm(ref[:, 36] - ref[:, 45], axis=-1)
    return np.linalg.norm(pred - ref, axis=-1).mean(-1) / eye


def group_errors(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    eye = np.linalg.norm(ref[:, 36] - ref[:, 45], axis=-1)[:, None]
    dist = np.linalg.norm(pred - ref, axis=-1) / eye
    return {name: round(float(np.median(dist[:, sl].mean(-1))), 4) for name, sl in GROUPS.items()}


def collect(rows, detector, mesh: dict[str, MeshLandmarker], dlib) -> dict:
    """Mesh points (per mesh variant), dlib points, identities, for faces CenterFace finds."""
    out = {"dlib": [], "holdout": [], **{k: [] for k in mesh}}
    for row in rows:
        image = cv2.imread(str(SHARED / "celeba_faces" / "images" / row["file"]))
        truth = np.array([float(row[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1")])
        boxes = detector.detect(image)
        if not boxes:
            continue
        ious = box_iou(truth, np.stack([b.as_array() for b in boxes]))[0]
        if ious.max() < 0.3:
            continue
        box = boxes[int(ious.argmax())]
        found = {k: m.mesh(image, [box])[0] for k, m in mesh.items()}
        if any(found[k].score < m.min_face_score for k, m in mesh.items()):
            continue
        hog = FaceBox(*truth, 1.0, "dlib")
        out["dlib"].append(dlib.landmarks(image, [hog])[0])
        out["holdout"].append(holdout_identity(row["celeba_identity"]))
        for k, r in found.items():
            out[k].append(r.points)
    return {k: np.asarray(v) for k, v in out.items()}


def fit(points: np.ndarray, ref: np.ndarray, ridge: float) -> PointMap:
    """Ridge least squares in the upright frame, towards the index table."""
    xy = points[..., :2].astype(np.float64)
    centre, angle, scale = canonical_frame(xy)
    upright = rotate(xy - centre[:, None], -angle) / scale[:, None, None]
    target = rotate(ref - centre[:, None], -angle) / scale[:, None, None]
    features = np.concatenate([upright[..., 0], upright[..., 1]], axis=1)
    targets = np.concatenate([target[..., 0], target[..., 1]], axis=1)
    f_mean, t_mean = features.mean(0), targets.mean(0)
    a, b = features - f_mean, targets - t_mean
    prior = PointMap.table().weights.astype(np.float64)
    weights = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ b + ridge * prior)
    bias = t_mean - f_mean @ weights
    return PointMap(weights.astype(np.float32), bias.astype(np.float32))


def sample_iou(mesh: MeshLandmarker, detector, maps: dict[str, PointMap]) -> dict:
    """Mean mask IoU against ciagan_sample's published masks, per map."""
    ious = {k: [] for k in maps}
    missed = 0
    for path in sorted((SHARED / "ciagan_sample" / "clr").glob("*/*.jpg")):
        image = cv2.imread(str(path))
        boxes = detector.detect(image)
        result = mesh.mesh(image, boxes[:1])[0] if boxes else None
        theirs = cv2.imread(str(path).replace("/clr/", "/msk/"), cv2.IMREAD_GRAYSCALE) < 128
        for k, point_map in maps.items():
            if result is None or result.score < mesh.min_face_score:
                ious[k].append(0.0)
                continue
            ours = render_mask_image(point_map(result.points)) < 128
            ious[k].append((ours & theirs).sum() / (ours | theirs).sum())
        missed += result is None or result.score < mesh.min_face_score
    return {"iou": {k: round(float(np.mean(v)), 4) for k, v in ious.items()}, "missed": missed}


def write_crops(rows, detector, count: int, path: Path) -> None:
    """First-pass crops of the first ``count`` held-out faces, for the converter's parity."""
    crops = []
    for row in rows:
        if not holdout_identity(row["celeba_identity"]):
            continue
        image = cv2.imread(str(SHARED / "celeba_faces" / "images" / row["file"]))
        boxes = detector.detect(image)
        if boxes:
            crops.append(cut_crop(image, roi_transform(*box_roi(boxes[0]))[0]))
        if len(crops) == count:
            break
    np.save(path, np.stack(crops))
    print(f"wrote {len(crops)} crops to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crops", nargs=2, metavar=("COUNT", "PATH"))
    parser.add_argument("--limit", type=int, default=0, help="photos to use (0: all)")
    parser.add_argument("--cache", type=Path, help="keep the collected points here (.npz)")
    args = parser.parse_args()
    with open(SHARED / "celeba_faces" / "faces.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    detector = create_detector("centerface")
    if args.crops:
        write_crops(rows, detector, int(args.crops[0]), Path(args.crops[1]))
        return
    if args.limit:
        rows = rows[: args.limit]
    start = time.perf_counter()
    variants = {
        "one_pass": MeshLandmarker(refine=False, mapping="table"),
        "refined": MeshLandmarker(refine=True, mapping="table"),
    }
    if args.cache and args.cache.is_file():
        data = dict(np.load(args.cache))
    else:
        data = collect(rows, detector, variants, DlibLandmarker())
        if args.cache:
            np.savez(args.cache, **data)
    print(f"{len(data['dlib'])} faces in {time.perf_counter() - start:.0f} s")
    tune, held = ~data["holdout"], data["holdout"]
    report: dict = {
        "data": "shared/data/celeba_faces, CenterFace box for the mesh, dlib on the HOG box",
        "faces_tune": int(tune.sum()),
        "faces_holdout": int(held.sum()),
        "ridge": RIDGE,
        "error": "median over held-out faces of mean point distance / outer-eye distance",
        "variants": {},
    }
    table = PointMap.table()
    maps = {}
    for name in variants:
        pts, ref = data[name], data["dlib"]
        fitted = fit(pts[tune], ref[tune], RIDGE)
        maps[name] = fitted
        for map_name, point_map in (("table", table), ("fitted", fitted)):
            pred = point_map(pts[held])
            report["variants"][f"{name}/{map_name}"] = {
                "error": round(float(np.median(errors(pred, ref[held]))), 4),
                "groups": group_errors(pred, ref[held]),
            }
    for name, mesh in variants.items():
        scored = sample_iou(mesh, detector, {"table": table, "fitted": maps[name]})
        for map_name, iou in scored["iou"].items():
            report["variants"][f"{name}/{map_name}"]["sample_mask_iou"] = iou
        report[f"sample_missed_{name}"] = scored["missed"]
    print(json.dumps(report, indent=2))
    best = max(report["variants"], key=lambda k: report["variants"][k]["sample_mask_iou"])
    report["chosen"] = best
    refine, map_name = best.split("/")
    report["shipped_map"] = map_name
    chosen = maps[refine] if map_name == "fitted" else table
    np.savez(MODEL_DIR / "mesh68_map.npz", weights=chosen.weights, bias=chosen.bias)
    (MODEL_DIR / "mesh68_map.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"chosen: {best}")


if __name__ == "__main__":
    main()
