"""Write tests/fixtures/parity_<model>.npz: timm's logits for weights made by tests/parity_recipe.py.

Run by hand in a venv with torch + timm (not needed by the tests themselves):

    python3 -m venv venv-torch        # a separate venv with torch + timm
    venv-torch/bin/pip install torch==2.13.0 numpy timm
    venv-torch/bin/python scripts/make_parity_fixtures.py

Every parameter and buffer of the timm model (BN running statistics too) is overwritten by the recipe, keyed
by its PyTorch name; the model runs in eval mode on the recipe's seeded input. Each fixture stores the seeds,
the input shape, the recipe version, timm's state-dict manifest (names and shapes, so the test can rebuild
the same PyTorch-named weights and push them through the production `checkpoint_filter_fn`) and the logits.

GhostNetV3 has two fixtures: the training form (`parity_ghostnetv3_050.npz`) and the fused form
(`parity_ghostnetv3_050_fused.npz`: timm's `convert_to_deploy()` model, whose own, fused parameters get the recipe's
values). `python scripts/make_parity_fixtures.py ghostnetv3_050_fused` writes only the named fixtures.
"""
import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

import parity_recipe  # noqa: E402

from benchmarks.torch_compat import import_timm  # noqa: E402  (needs torch + timm only, not MindSpore)

# (fixture name, timm model name, input shape N×C×H×W, fused). v2 and v3 at 72×88: their DFC maps are 18×22,
# 9×11, 5×6 and 3×3, so the nearest upsample is checked on odd and even sizes, square and not.
FIXTURES = (
    ("ghostnet_050", "ghostnet_050", (2, 3, 64, 64), False),
    ("ghostnetv2_100", "ghostnetv2_100", (2, 3, 72, 88), False),
    ("ghostnetv3_050", "ghostnetv3_050", (2, 3, 72, 88), False),
    ("ghostnetv3_050_fused", "ghostnetv3_050", (2, 3, 72, 88), True),
)
SEED = 20240601
INPUT_SEED = 7


def make_fixture(timm, fixture: str, name: str, input_shape, fused: bool, out_dir: str) -> str:
    import torch

    model = timm.create_model(name, num_classes=1000).eval()
    if fused:
        model.convert_to_deploy()
    manifest = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    state = parity_recipe.make_state(manifest, SEED)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    x = parity_recipe.make_input(input_shape, INPUT_SEED)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
        logits64 = model.double()(torch.from_numpy(x).double()).numpy()
    std = float(logits.std())
    if not 0.5 <= std <= 50 or not np.isfinite(logits).all():
        raise SystemExit(f"{fixture}: logits std {std:.3g} is outside [0.5, 50]; adjust the recipe's scales")
    path = os.path.join(out_dir, f"parity_{fixture}.npz")
    np.savez_compressed(
        path,
        recipe_version=np.int64(parity_recipe.RECIPE_VERSION),
        seed=np.int64(SEED),
        input_seed=np.int64(INPUT_SEED),
        input_shape=np.asarray(input_shape, dtype=np.int64),
        timm_model=np.asarray(name),
        fused=np.asarray(fused),
        versions=np.asarray(f"torch {torch.__version__}, timm {timm.__version__}"),
        torch_state=np.asarray(json.dumps(manifest, separators=(",", ":"))),
        logits=logits.astype(np.float32),
    )
    print(f"{path}: {os.path.getsize(path) / 1024:.1f} KB, {len(manifest)} tensors, logits {logits.shape} "
          f"std {std:.3f} max|.| {np.abs(logits).max():.3f}; torch fp32 vs fp64 max abs diff "
          f"{np.abs(logits - logits64).max():.2e}")
    return path


class _Deprecated(argparse.Action):
    """--out-dir, the old spelling of --output_dir, as mindghost.cli's aliases do it (this script runs in the torch
    venv, without mindghost)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated; use --{self.dest}", file=sys.stderr, flush=True)
        setattr(namespace, self.dest, values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixtures", nargs="*", help="fixture names to write (default: all)")
    parser.add_argument("--output_dir", default=os.path.join(REPO, "tests", "fixtures"),
                        help="where the fixture files are written")
    parser.add_argument("--out-dir", dest="output_dir", action=_Deprecated, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    known = [f[0] for f in FIXTURES]
    unknown = sorted(set(args.fixtures) - set(known))
    if unknown:
        parser.error(f"unknown fixture(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    os.makedirs(args.output_dir, exist_ok=True)
    timm = import_timm()
    for fixture, name, shape, fused in FIXTURES:
        if not args.fixtures or fixture in args.fixtures:
            make_fixture(timm, fixture, name, shape, fused, args.output_dir)


if __name__ == "__main__":
    main()
