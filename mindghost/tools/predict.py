"""Classify images with a checkpoint or an exported MINDIR file: top-k class names and probabilities.

    python -m mindghost.tools.predict --ckpt_path runs/x/checkpoints/best.ckpt photos/ extra/*.jpg --top_k 3 \
        --out predictions.csv

Inputs are image files, folders (searched recursively for image extensions) and globs, in the order given.
Each image gets validation's eval preprocessing (`mindghost.inference.eval_transforms`: resize the short side by
crop_pct, center crop, normalize; a grey-scale model (in_channels 1) gets each image decoded as L, the luma of a
colour file), with the values the checkpoint recorded at training time (image size, crop_pct, interpolation,
mean/std; the model's default cfg where it records none); `--image_size` and the other
preprocessing flags override them with a warning. `--onnx FILE` (an exported or INT8 ONNX file, in onnxruntime)
and `--mindir FILE` run an exported graph instead, with the
preprocessing, class count and class names of the `<name>.json` export wrote next to it.
Class names: the checkpoint's `class_names` (written by training), else `--class_names FILE` (one per line,
or a JSON list), else class indices.

Output: a table on stdout, and with `--out` a `.json` (everything, per image) or `.csv` (one row per image and
rank). An image that cannot be read or decoded gets an `error: <file>: ...` line on stderr (and an entry in the
output file); the other images are still predicted and written, and the command then exits 1, so scripts notice.
Usage errors (no images found, a bad checkpoint, wrong flags) exit 2 before anything is predicted.
"""
import argparse
import csv
import glob
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data import IMG_EXTENSIONS
from ..errors import UsageError


def find_images(inputs: Sequence[str]) -> List[str]:
    """Files, folders (recursive, sorted, image extensions only) and globs → a list of files in input order,
    each once. An input that matches nothing is an error naming it."""
    found: List[str] = []
    for item in inputs:
        if os.path.isdir(item):
            matches = sorted(os.path.join(root, f) for root, _, files in os.walk(item) for f in files
                             if f.lower().endswith(IMG_EXTENSIONS))
            others = [p for p in matches if not os.path.isfile(p)]  # sockets, pipes, dangling links
            if others:
                print(f"note: left out {len(others)} entr{'y' if len(others) == 1 else 'ies'} under '{item}' with an "
                      f"image name that are not files: {', '.join(others[:3])}{' ...' if len(others) > 3 else ''}",
                      file=sys.stderr)
                matches = [p for p in matches if os.path.isfile(p)]
            if not matches:
                raise UsageError(f"no images ({', '.join(IMG_EXTENSIONS)}) under the folder '{item}'")
        elif os.path.isfile(item):
            matches = [item]
        elif glob.has_magic(item):
            matches = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not matches:
                raise UsageError(f"the pattern '{item}' matches no files")
        else:
            raise UsageError(f"'{item}' is not a file, a folder or a glob pattern that matches files")
        found += matches
    return list(dict.fromkeys(found))


def _decode_error(e: Exception) -> str:
    """The last meaningful line of MindSpore's multi-line pipeline error ("Decode: image decode failed")."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip() and not set(line.strip()) <= set("-")]
    line = next((x for x in reversed(lines) if "[ERROR]" in x), lines[-1] if lines else type(e).__name__)
    return line.replace("[ERROR]", "").strip()


def preprocess(paths: Sequence[str], setup) -> Tuple[List[Tuple[str, np.ndarray]], List[Dict[str, str]]]:
    """Each file through validation's eval transform for `setup`: ([(path, CHW float32 array)], [{file, error}])."""
    from mindspore.dataset import transforms

    from ..inference import eval_transforms

    pipeline = transforms.Compose(eval_transforms(setup))
    ok: List[Tuple[str, np.ndarray]] = []
    failed: List[Dict[str, str]] = []
    for path in paths:
        try:
            data = np.fromfile(path, np.uint8)
            if data.size == 0:
                raise ValueError("empty file (0 bytes)")
            ok.append((path, pipeline(data)))
        except (OSError, ValueError, RuntimeError) as e:
            reason = _decode_error(e) if isinstance(e, RuntimeError) else str(e)
            failed.append({"file": path, "error": f"cannot read it as an image: {reason}"})
            print(f"error: {path}: cannot read it as an image: {reason}", file=sys.stderr, flush=True)
    return ok, failed


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def run_batches(forward, images: np.ndarray, batch: int, fixed_batch: bool) -> np.ndarray:
    """Logits of `images` (N, C, H, W) in batches of `batch`; `fixed_batch` pads the last one with zeros (GRAPH
    mode and MINDIR files compile for one input shape) and drops the padded rows."""
    out = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        n = len(x)
        if fixed_batch and n < batch:
            x = np.concatenate([x, np.zeros((batch - n,) + x.shape[1:], x.dtype)])
        out.append(np.asarray(forward(x))[:n])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def top_k(probs: np.ndarray, k: int, names: Optional[Sequence[str]]) -> List[List[Dict[str, Any]]]:
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[{"class": int(c), "name": names[c] if names else str(int(c)), "prob": float(p[c])} for c in row]
            for row, p in zip(order, probs)]


def format_table(rows: Sequence[Dict[str, Any]], k: int) -> str:
    width = max([len("image")] + [len(r["file"]) for r in rows])
    name_w = max([len("top-1")] + [len(t["name"]) for r in rows for t in r["top_k"]])
    head = f"{'image':<{width}}" + "".join(f"  {f'top-{i + 1}':<{name_w}} {'prob':>6}" for i in range(k))
    lines = [head]
    for r in rows:
        lines.append(f"{r['file']:<{width}}" + "".join(f"  {t['name']:<{name_w}} {t['prob']:6.3f}" for t in r["top_k"]))
    return "\n".join(lines)


def write_output(path: str, report: Dict[str, Any]) -> None:
    """`.json`: the whole report; `.csv`: file, rank, class_index, class_name, probability, error."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.lower().endswith(".json"):
        with open(path, "w") as fh:
            json.dump(report, fh, indent=1)
        return
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "rank", "class_index", "class_name", "probability", "error"])
        for r in report["predictions"]:
            for rank, t in enumerate(r["top_k"], 1):
                writer.writerow([r["file"], rank, t["class"], t["name"], f"{t['prob']:.6f}", ""])
        for f in report["errors"]:
            writer.writerow([f["file"], "", "", "", "", f["error"]])


def _export_json(mindir: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """The report `mindghost.tools.export` wrote next to a MINDIR file (None when there is none), and its path."""
    path = os.path.splitext(mindir)[0] + ".json"
    if not os.path.isfile(path):
        return None, path
    with open(path) as fh:
        return json.load(fh), path


def build_parser() -> argparse.ArgumentParser:
    from ..cli import Parser, add_args

    p = Parser(prog="python -m mindghost.tools.predict",
                                description="Top-k classes of images, with a checkpoint's own eval preprocessing.")
    p.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    add_args(p, "ckpt_path", "mindir", "model", "ema", "num_classes", "class_names", "top_k", "batch_size", "out",
             "image_size", "crop_pct", "interpolation", "mean", "std", "fuse_bn", "mode", "device",
             defaults={"ckpt_path": "", "model": None, "num_classes": None, "batch_size": None, "image_size": None},
             helps={"ckpt_path": "checkpoint file (mindghost, MindCV, .safetensors or .pth)",
                    "mindir": "an exported MINDIR file instead of --ckpt_path (preprocessing from the <name>.json "
                              "export wrote next to it)",
                    "model": "registered model name (default: the one the checkpoint records)",
                    "ema": "use the EMA weights of a mindghost training checkpoint",
                    "num_classes": "classifier size (default: the checkpoint's)",
                    "top_k": "classes to show per image (at most num_classes)",
                    "batch_size": "images per forward (default 16; a MINDIR file: the batch it was exported with)",
                    "out": "also write the predictions to a .json or .csv file",
                    "image_size": "center-crop size (default: the checkpoint's)",
                    "crop_pct": "crop / resize ratio (default: the checkpoint's)",
                    "interpolation": "resize interpolation (default: the checkpoint's)",
                    "mean": "per-channel mean in [0, 1] (default: the checkpoint's)",
                    "std": "per-channel std in [0, 1] (default: the checkpoint's)"})
    p.add_argument("--onnx", default="", help="an exported or INT8 .onnx file instead (run in onnxruntime; "
                   "preprocessing from the .json beside it, as for --mindir)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.ckpt_path) + bool(args.mindir) + bool(args.onnx) != 1:
        parser.error("pass exactly one of --ckpt_path (a checkpoint), --mindir (an exported MINDIR file) and --onnx "
                     "(an exported .onnx file)")
    onnx_file = bool(args.onnx)
    args.mindir = args.mindir or args.onnx  # an exported graph with its export JSON either way
    if args.top_k < 1 or (args.batch_size is not None and args.batch_size < 1):
        parser.error("--top_k and --batch_size must be >= 1")
    if args.out and not args.out.lower().endswith((".json", ".csv")):
        parser.error(f"--out '{args.out}': the file name must end in .json or .csv (it picks the format)")

    from ..runtime import prepare_environment

    device, env_note = prepare_environment(args.device)  # before MindSpore loads: the CPU fast path
    from ..inference import describe, read_class_names, resolve_inference_setup, resolve_source

    explicit = {"image_size": args.image_size, "crop_pct": args.crop_pct, "interpolation": args.interpolation,
                "mean": args.mean, "std": args.std, "num_classes": args.num_classes,
                "class_names": read_class_names(args.class_names) if args.class_names else None}
    if args.ckpt_path:
        weights = resolve_source(args.ckpt_path, args.model, explicit)
        setup, source = weights.setup, args.ckpt_path
    else:
        if not os.path.isfile(args.mindir):
            raise UsageError(f"--mindir: file not found: '{args.mindir}'")
        report, json_path = _export_json(args.mindir)
        if report is None and not args.model:
            raise UsageError(f"--mindir: '{json_path}' (written by mindghost.tools.export) is missing, so the "
                             "preprocessing is unknown; put it next to the MINDIR file, or pass --model (its default "
                             "preprocessing) and the flags the model was trained with (--image_size, --mean, --std)")
        from ..deploy.onnx import export_meta

        meta = export_meta(report) if report else None
        setup = resolve_inference_setup(meta, args.model, explicit, source=json_path, origin="the export JSON's")
        source = args.mindir
        exported_batch = report["input_shape"][0] if report else None
        if not isinstance(exported_batch, int):  # a symbolic batch (quantize's files): any batch runs
            exported_batch = None
        if exported_batch and args.batch_size and args.batch_size != exported_batch:
            raise UsageError(f"--batch_size {args.batch_size}: '{args.mindir}' was exported with batch "
                             f"{report['input_shape'][0]}; leave --batch_size out")
        if exported_batch:
            args.batch_size = exported_batch
    for line in setup.messages():
        print(line)
    paths = find_images(args.inputs)
    k = min(args.top_k, setup.num_classes)

    from ..runtime import setup_context

    setup_context(device, mode="graph" if args.mindir else args.mode)
    import mindspore as ms

    built = None
    if onnx_file:
        from ..deploy.onnx import OnnxModel

        forward = OnnxModel(args.mindir)
        batch, fixed = args.batch_size or 16, False  # OnnxModel pads a fixed-batch graph itself
    elif args.mindir:
        from mindspore import nn

        graph = nn.GraphCell(ms.load(args.mindir))
        batch, fixed = args.batch_size or 1, True

        def forward(x):
            try:
                return graph(ms.Tensor(x)).asnumpy()
            except (RuntimeError, ValueError) as e:
                raise UsageError(f"'{args.mindir}' does not take input {list(x.shape)} (it fixes the batch and size it "
                                 "was exported with: pass --batch_size and --image_size as exported): "
                                 f"{_decode_error(e)}") from e
    else:
        from ..inference import build_inference_model

        # the form validate.py evaluates: GhostNetV3 fused, BN folded on CPU, the CPU pass
        built = build_inference_model(source=weights, ema=args.ema, fuse_bn=args.fuse_bn, device=device)
        for line in built.notes:
            print(line)
        model = built.model
        batch, fixed = args.batch_size or 16, args.mode == "graph"

        def forward(x):
            return model(ms.Tensor(x)).asnumpy()

    print(f"predicting {len(paths)} image(s) with {describe(setup)}, batch {batch}, {device}")
    if env_note:
        print(f"note: {env_note}")
    ok, failed = preprocess(paths, setup)
    images = np.stack([a for _, a in ok]) if ok else np.zeros((0, setup.in_channels, 1, 1), np.float32)
    probs = softmax(run_batches(forward, images, batch, fixed)) if ok else np.zeros((0, setup.num_classes))
    rows = [{"file": path, "top_k": t} for (path, _), t in zip(ok, top_k(probs, k, setup.class_names))]
    if rows:
        print(format_table(rows, k))
    report = {"source": os.path.abspath(source), "model": setup.model, "num_classes": setup.num_classes,
              "class_names": list(setup.class_names) if setup.class_names else None,
              "preprocessing": setup.preprocessing_dict(), "notes": setup.messages(), "top_k": k,
              "bn_folded": built.bn_folded if built else None,
              "reparameterized": built.reparameterized if built else None, "predictions": rows, "errors": failed}
    if args.out:
        write_output(args.out, report)
        print(f"wrote {args.out}")
    if failed:
        print(f"{len(failed)} of {len(paths)} image(s) could not be read (error lines above); the other "
              f"{len(rows)} were predicted", file=sys.stderr)
        return 1
    return 0


def cli() -> None:
    """Console entry point (`mindghost-predict`): exits through `runtime.run_main`."""
    from ..runtime import run_main

    run_main(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
