#!/usr/bin/env python
"""Write Fashion-MNIST (IDX .gz files) as an ImageFolder tree: <output_dir>/train/<class>/*.png,
<output_dir>/val/<class>/*.png.

Source: the Debian/Ubuntu package `dataset-fashion-mnist` (MIT licence; 60,000 train + 10,000 test 28x28 grey
images), installed at /usr/share/datasets/fashion-mnist. The test set becomes `val`. Idempotent: a finished
tree (marked by `.complete`) is left alone. Needs only numpy and Pillow (a MindSpore dependency).

    python scripts/prepare_fashion_mnist.py --output_dir data/fashion_mnist
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

DEFAULT_SRC = "/usr/share/datasets/fashion-mnist"
# folder names sort in label order (ImageFolder assigns labels by sorted folder name)
CLASSES = ["0_tshirt_top", "1_trouser", "2_pullover", "3_dress", "4_coat", "5_sandal", "6_shirt", "7_sneaker",
           "8_bag", "9_ankle_boot"]
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_source(src: str) -> str:
    missing = [f for pair in FILES.values() for f in pair if not os.path.isfile(os.path.join(src, f))]
    if missing:
        raise SystemExit(
            f"Fashion-MNIST not found in '{src}' (missing {', '.join(missing)}).\n"
            "  Debian/Ubuntu: sudo apt-get install -y dataset-fashion-mnist\n"
            "  Elsewhere: download the four *-ubyte.gz files from "
            "https://github.com/zalandoresearch/fashion-mnist (data/fashion) into a folder and pass --src FOLDER."
        )
    return src


def write_split(images: np.ndarray, labels: np.ndarray, out: str) -> None:
    from PIL import Image

    for c in CLASSES:
        os.makedirs(os.path.join(out, c), exist_ok=True)
    for i, (img, label) in enumerate(zip(images, labels)):
        Image.fromarray(img, mode="L").save(os.path.join(out, CLASSES[label], f"{i:05d}.png"), compress_level=1)


class _Deprecated(argparse.Action):
    """--out, the old spelling of --output_dir, as mindghost.cli's aliases do it (this script needs only numpy and
    Pillow, not mindghost)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated; use --{self.dest}", file=sys.stderr, flush=True)
        setattr(namespace, self.dest, values)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", default=DEFAULT_SRC, help="folder with the IDX .gz files")
    p.add_argument("--output_dir", default="data/fashion_mnist", help="output ImageFolder root")
    p.add_argument("--out", dest="output_dir", action=_Deprecated, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    marker = os.path.join(args.output_dir, ".complete")
    if os.path.isfile(marker):
        print(f"{args.output_dir}: already prepared ({open(marker).read().strip()})")
        return 0
    src = find_source(args.src)
    t0 = time.time()
    counts = {}
    for split, (img_file, lbl_file) in FILES.items():
        images = read_idx(os.path.join(src, img_file))
        labels = read_idx(os.path.join(src, lbl_file))
        if len(images) != len(labels):
            raise SystemExit(f"{img_file}: {len(images)} images but {len(labels)} labels")
        write_split(images, labels, os.path.join(args.output_dir, split))
        counts[split] = int(len(images))
        print(f"{split}: {len(images)} images -> {os.path.join(args.output_dir, split)}", flush=True)
    with open(marker, "w") as fh:
        fh.write(json.dumps(counts) + "\n")
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
