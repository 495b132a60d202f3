"""Feature-map redundancy, the observation behind GhostNet (paper Figure 1): many maps of a layer are
near-copies of each other ("ghosts"), so they could be made by cheap operations.

    python -m mindghost.tools.redundancy --model ghostnet_100 --ckpt_path ghostnet_100.ckpt --image cat.jpg \
        --compare_model mindcv:resnet50 --compare_ckpt resnet50.ckpt --out redundancy.png --top_k 8

The chosen layer's output is captured with a forward hook (PyNative) for one image or a folder; each
channel's maps over all images are flattened into one vector, and the cosine similarity of every channel
pair is computed. The figure shows the `--top_k` most similar pairs (maps of the first image) and the
histogram of all pairwise similarities; with `--compare_model` both models share one figure. The summary
(mean pairwise |cos|, fraction of pairs above 0.9) is printed and written to `<out>.json`.
A model is a mindghost name or `mindcv:<name>` for a MindCV model (e.g. `mindcv:resnet50`, the plain
network of the paper's figure). Images get validation's eval preprocessing, from the checkpoint's recorded
training config where it has one (`mindghost.inference`).
"""
import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data import IMG_EXTENSIONS
from ..errors import UsageError
from .plots import matplotlib_available, require_matplotlib

DEFAULT_LAYERS = ("blocks.0.0.ghost1.primary_conv",)  # GhostNet v1/v2: first bottleneck's intrinsic maps
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_paths(path: str, limit: int = 16) -> List[str]:
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--image: '{path}' is neither an image file nor a folder")
    found = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMG_EXTENSIONS))
    if not found:
        raise FileNotFoundError(f"--image: no images ({', '.join(IMG_EXTENSIONS)}) in '{path}'")
    return found[:limit]


def load_images(paths: Sequence[str], setup) -> np.ndarray:
    """(N, C, H, W) float32: each image through validation's eval transform for `setup`
    (an `inference.InferenceSetup`: resize by crop_pct, center crop, normalize)."""
    from mindspore.dataset import transforms

    from ..inference import eval_transforms

    pipeline = transforms.Compose(eval_transforms(setup))
    out = []
    for path in paths:
        try:
            out.append(pipeline(np.fromfile(path, np.uint8)))
        except RuntimeError as e:  # MindSpore's multi-line "Decode: image decode failed"
            raise UsageError(f"--image: cannot decode '{path}' as an image ({str(e).strip().splitlines()[-1]})") \
                from e
    return np.stack(out)


def build_model(spec: str, ckpt_path: str = "", random_weights: bool = False, num_classes: Optional[int] = None,
                img_size: Optional[int] = None):
    """A mindghost model by name, or `mindcv:<name>`; returns (model, `inference.InferenceSetup`).

    A mindghost checkpoint's recorded model, class count and eval preprocessing are used (and said); an explicit
    `num_classes` / `img_size` that disagrees is refused / overrides it with a warning."""
    from ..inference import InferenceSetup, resolve_inference_setup, setup_from_checkpoint

    if not ckpt_path and not random_weights:
        raise UsageError(f"no checkpoint for '{spec}'. Pass --ckpt_path/--compare_ckpt, or "
                         "--random_weights to look at untrained weights on purpose.")
    if spec.startswith("mindcv:"):
        from mindcv.models import create_model as mindcv_create_model
        from mindspore import load_checkpoint, load_param_into_net

        from ..inference import check_ckpt_path

        name = spec.split(":", 1)[1]
        model = mindcv_create_model(name, num_classes=num_classes or 1000)
        if ckpt_path:
            not_loaded, _ = load_param_into_net(model, load_checkpoint(check_ckpt_path(ckpt_path)))
            if not_loaded:
                raise UsageError(f"{ckpt_path} does not fit mindcv:{name}; not loaded: {not_loaded[:8]}")
        setup = InferenceSetup(model=spec, num_classes=num_classes or 1000, in_channels=3,
                               image_size=img_size or 224, crop_pct=0.875, interpolation="bilinear",
                               mean=IMAGENET_MEAN, std=IMAGENET_STD)
    else:
        from ..models import create_model

        explicit = {"num_classes": num_classes, "image_size": img_size}
        flags = {"image_size": "--img_size"}
        if ckpt_path:
            _, setup = setup_from_checkpoint(ckpt_path, spec, explicit, flags)
        else:
            setup = resolve_inference_setup({}, spec, explicit, flags=flags)
        model = create_model(spec, num_classes=setup.num_classes, in_channels=setup.in_channels,
                             checkpoint_path=ckpt_path or None)
    model.set_train(False)
    return model, setup


def default_layer(model) -> str:
    """The first Ghost module's primary (intrinsic) output if the model has one, else its first convolution."""
    from mindspore import nn

    names = [name for name, _ in model.cells_and_names()]
    for name in DEFAULT_LAYERS:
        if name in names:
            return name
    for name in names:
        if name.endswith("primary_conv"):
            return name
    for name, cell in model.cells_and_names():
        if isinstance(cell, nn.Conv2d):
            return name
    raise UsageError("the model has no Conv2d; pass --layer")


def capture(model, layer: str, images: np.ndarray) -> np.ndarray:
    """Output of the cell named `layer` for a batch of images, as (N, C, H, W), from one traced forward."""
    from ..models import trace_forward

    cells = dict(model.cells_and_names())
    if layer not in cells or not layer:
        close = [n for n in cells if n and layer.split(".")[-1] in n][:8]
        raise UsageError(f"no layer '{layer}' in the model (--layer); e.g. {close or list(cells)[1:9]}")
    captured = []
    trace_forward(model, images, [(layer, cells[layer])],
                  on_output=lambda _name, _cell, _inputs, output: captured.append(output.asnumpy()))
    if not captured or captured[0].ndim != 4:
        raise UsageError(f"layer '{layer}' did not produce a 4-D feature map; pick a convolutional layer (--layer)")
    return captured[0]


def cosine_matrix(maps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(C, C) cosine similarity of channels (each flattened over images and positions), and a mask of the
    channels that are not all zero (dead channels have no direction and are left out)."""
    vectors = maps.transpose(1, 0, 2, 3).reshape(maps.shape[1], -1).astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    alive = norms > 1e-12 * max(float(norms.max()), 1e-30)
    unit = vectors / np.where(alive, norms, 1.0)[:, None]
    return unit @ unit.T, alive


def summarize(sim: np.ndarray, alive: np.ndarray, top_k: int, threshold: float = 0.9) -> Dict[str, object]:
    idx = np.flatnonzero(alive)
    sub = sim[np.ix_(idx, idx)]
    iu = np.triu_indices(len(idx), k=1)
    values = sub[iu]
    order = np.argsort(-values)[:top_k]
    pairs = [(int(idx[iu[0][o]]), int(idx[iu[1][o]]), float(values[o])) for o in order]
    return {
        "channels": int(sim.shape[0]), "dead_channels": int((~alive).sum()), "pairs": int(values.size),
        "mean_abs_cos": float(np.abs(values).mean()) if values.size else float("nan"),
        "median_cos": float(np.median(values)) if values.size else float("nan"),
        f"frac_pairs_cos_gt_{threshold}": float((values > threshold).mean()) if values.size else float("nan"),
        "top_pairs": [{"a": a, "b": b, "cos": c} for a, b, c in pairs],
        "_values": values,
    }


def draw_figure(panels: List[Dict[str, object]], out: str, top_k: int) -> str:
    """One column block per model: the top pairs (two maps each, first image) above a similarity histogram."""
    plt = require_matplotlib()
    from matplotlib import gridspec

    n = len(panels)
    rows = max(1, min(top_k, max(len(p["summary"]["top_pairs"]) for p in panels)))
    height = 1.25 * rows + 3.2
    fig = plt.figure(figsize=(3.4 * n, height))
    outer = gridspec.GridSpec(1, n, figure=fig, wspace=0.25, top=1 - 0.8 / height, bottom=0.05)
    bins = np.linspace(-1, 1, 41)
    for col, panel in enumerate(panels):
        s = panel["summary"]
        inner = gridspec.GridSpecFromSubplotSpec(rows + 1, 2, subplot_spec=outer[col],
                                                 height_ratios=[1] * rows + [2.4], hspace=0.35, wspace=0.05)
        maps = panel["maps"][0]
        for r, pair in enumerate(s["top_pairs"][:rows]):
            for c, ch in enumerate((pair["a"], pair["b"])):
                ax = fig.add_subplot(inner[r, c])
                ax.imshow(maps[ch], cmap="viridis")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"ch {ch}" + (f"  cos {pair['cos']:.3f}" if c == 0 else ""), fontsize=7, loc="left")
        ax = fig.add_subplot(inner[rows, :])
        ax.hist(s["_values"], bins=bins, color=f"C{col}")
        ax.set_xlabel("pairwise cosine similarity", fontsize=8)
        ax.set_ylabel("pairs", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"mean |cos| {s['mean_abs_cos']:.3f}, >0.9: {100 * s['frac_pairs_cos_gt_0.9']:.1f}%",
                     fontsize=8)
        weights = "random weights" if panel["random"] else os.path.basename(panel["ckpt"])
        fig.text(outer[col].get_position(fig).x0, 1 - 0.1 / height,
                 f"{panel['model']}  [{panel['layer']}]\n{s['channels']} maps {panel['maps'].shape[2]}×"
                 f"{panel['maps'].shape[3]}, {weights}", fontsize=8, va="top")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mindghost.tools.redundancy",
                                     description="Most similar feature-map pairs of a layer (GhostNet Figure 1).")
    parser.add_argument("--model", required=True, help="mindghost model name, or mindcv:<name>")
    parser.add_argument("--ckpt_path", default="")
    parser.add_argument("--layer", default="", help="cell name (default: first Ghost primary conv, else first conv)")
    parser.add_argument("--compare_model", default="", help="a second model for the same figure (e.g. mindcv:resnet50)")
    parser.add_argument("--compare_ckpt", default="")
    parser.add_argument("--compare_layer", default="")
    parser.add_argument("--random_weights", action="store_true", help="allow models without a checkpoint")
    parser.add_argument("--num_classes", type=int, default=None, help="classifier size of the checkpoints")
    parser.add_argument("--image", required=True, help="an image file, or a folder (its first --max_images)")
    parser.add_argument("--max_images", type=int, default=16)
    parser.add_argument("--img_size", type=int, default=None,
                        help="input size (default: the checkpoint's recorded eval size, else the model's cfg)")
    parser.add_argument("--top_k", type=int, default=8, help="most similar pairs to draw")
    parser.add_argument("--out", default="feature_redundancy.png")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not matplotlib_available():
        return 2
    paths = image_paths(args.image, args.max_images)

    from ..runtime import prepare_environment, setup_context

    device, _ = prepare_environment(args.device)
    setup_context(device, mode="pynative")

    specs = [(args.model, args.ckpt_path, args.layer)]
    if args.compare_model:
        specs.append((args.compare_model, args.compare_ckpt, args.compare_layer))
    panels = []
    for spec, ckpt, layer in specs:
        # errors (run directory, other model, bad image) reach run_main, which says why
        model, setup = build_model(spec, ckpt, args.random_weights, args.num_classes, args.img_size)
        for line in setup.messages():
            print(f"{spec}: {line}")
        layer = layer or default_layer(model)
        batch = load_images(paths, setup)
        maps = capture(model, layer, batch)
        sim, alive = cosine_matrix(maps)
        panels.append({"model": spec, "layer": layer, "ckpt": ckpt, "random": not ckpt, "maps": maps,
                       "preprocessing": setup.preprocessing_dict(), "summary": summarize(sim, alive, args.top_k)})

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    draw_figure(panels, args.out, args.top_k)
    report = {"images": paths, "figure": args.out, "models": []}
    print(f"{len(paths)} image(s); cosine similarity of flattened feature maps per channel pair")
    for p in panels:
        s = {k: v for k, v in p["summary"].items() if not k.startswith("_")}
        report["models"].append({"model": p["model"], "layer": p["layer"], "checkpoint": p["ckpt"] or None,
                                 "map_shape": list(p["maps"].shape[1:]),
                                 "preprocessing": p["preprocessing"], **s})
        top = ", ".join(f"{t['a']}~{t['b']} {t['cos']:.3f}" for t in s["top_pairs"][:3])
        print(f"{p['model']:<24} layer {p['layer']}: {s['channels']} maps {p['maps'].shape[2]}x{p['maps'].shape[3]} "
              f"({s['dead_channels']} all-zero), mean |cos| {s['mean_abs_cos']:.3f}, "
              f"pairs > 0.9: {100 * s['frac_pairs_cos_gt_0.9']:.1f}%; top: {top}")
    json_path = os.path.splitext(args.out)[0] + ".json"
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out} and {json_path}")
    return 0


def cli() -> None:
    """Console entry point (`mindghost-redundancy`): exits through `runtime.run_main`."""
    from ..runtime import run_main

    run_main(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
