"""Decode every image of an ImageFolder dataset once and list the files the training pipeline cannot use.

    python -m mindghost.tools.verify_images --data_dir /path/to/imagenet [--splits train val] [--num_workers 8]

Catches what the fast header scan of train.py / validate.py cannot: JPEGs whose markers are intact but whose
data is damaged (MindSpore's decoder raises, crashes or half-decodes them). Files found good are remembered
(`mindghost.data.verify`), so a rerun, or train.py with `verify_images: True`, decodes only new or changed
files. Exit status: 0 all good, 1 bad files listed, 2 usage error.
"""
import argparse
import os
import sys
from typing import List, Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mindghost.tools.verify_images", description=__doc__.split("\n")[0])
    from ..cli import add_args, str2bool

    add_args(p, "data_dir", data_dir={"required": True}, helps={"data_dir": "dataset root holding the split folders"})
    p.add_argument("--splits", nargs="+", default=None, help="split folders to check (default: every folder of "
                   "data_dir)")
    add_args(p, "num_workers", "progress", helps={"num_workers": "decoding processes (0 = usable cores)",
                                                  "progress": "progress bar"})
    p.add_argument("--cache", type=str2bool, nargs="?", const=True, default=True,
                   help="skip files verified before (unchanged size and mtime) and remember the good ones")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from ..data.verify import cache_path, verify_split
    from ..errors import UsageError

    if not os.path.isdir(args.data_dir):
        raise UsageError(f"--data_dir: '{args.data_dir}' is not a folder")
    splits: List[str] = args.splits or sorted(d for d in os.listdir(args.data_dir)
                                             if os.path.isdir(os.path.join(args.data_dir, d)))
    missing = [s for s in splits if not os.path.isdir(os.path.join(args.data_dir, s))]
    if missing or not splits:
        raise UsageError(f"--splits: no folder {missing or splits} under '{args.data_dir}'")
    total_bad = 0
    for split in splits:
        root = os.path.join(args.data_dir, split)
        files, cached, bad = verify_split(root, args.num_workers, args.progress, args.cache)
        total_bad += len(bad)
        for path, reason in sorted(bad):
            print(f"bad image: {path}: {reason}", flush=True)
        print(f"{root}: {files} images, {files - cached} decoded, {cached} verified before, {len(bad)} bad"
              + (f" (good ones remembered in {cache_path(root)})" if args.cache else ""), flush=True)
    if total_bad:
        print(f"{total_bad} image(s) cannot be used for training: remove or replace them, then rerun",
              file=sys.stderr)
        return 1
    return 0


def cli() -> None:
    """Console entry point (`mindghost-verify-images`): exits through `runtime.run_main`."""
    from ..runtime import run_main

    run_main(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
