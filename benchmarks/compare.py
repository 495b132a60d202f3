"""The full speed comparison behind docs/performance.md: `mindghost.tools.benchmark` plus peers in child
processes and the physical floor.

    python benchmarks/compare.py --model ghostnet_100 --img_size 224 --batch 32 \
        --peers fused mindcv onnxruntime shipped torch --torch_python /path/to/torch-venv/bin/python \
        --repeats 5 --warmup 1 --json bench.json

Child-process peers (benchmarks/worker.py, one persistent child each, asked for one timed call at a time):
`shipped` (MindCV's model on MindSpore as shipped: oneDNN's default ISA and MindSpore's default threads),
`shipped_mindghost` (mindghost's model with oneDNN's default ISA), `torch` / `torch_cl` (timm's model in PyTorch
eager, NCHW / channels_last; needs --torch_python). When torch ran, ratios are against it (the performance
goals are stated against PyTorch eager). `--floor` adds matmul GFLOP/s, copy bandwidth and the model's
MACs and bytes (benchmarks/floor.py).
"""
import os
import sys
from typing import Optional, Sequence

if __package__ in (None, ""):  # run by path: make `benchmarks` and `mindghost` importable from the repo root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.peers import SUBPROCESS_PEERS, PeerError, start_subprocess_peers  # noqa: E402
from mindghost.tools import benchmark  # noqa: E402

PEER_HELP = benchmark.PEER_HELP + (
    "; in a child process each: shipped (MindCV's model on MindSpore as shipped: oneDNN's default ISA and thread "
    "count), shipped_mindghost (mindghost's model, oneDNN's default ISA), torch / torch_cl (timm's model in "
    "PyTorch eager, NCHW / channels_last; needs --torch_python)")


def build_parser():
    """benchmark's options, its subprocess peers, and the torch / floor options."""
    from mindghost.cli import add_args

    parser = benchmark.build_parser(benchmark.IN_PROCESS_PEERS + SUBPROCESS_PEERS, PEER_HELP,
                                    prog="python benchmarks/compare.py")
    parser.add_argument("--torch_python", default="", help="python of a venv with torch + timm, for the torch peers")
    parser.add_argument("--torch_env", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra environment of the torch peers, e.g. OMP_WAIT_POLICY=PASSIVE: on a loaded machine "
                             "PyTorch's spinning OpenMP barriers can make it 10-100x slower")
    add_args(parser, "floor")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if any("=" not in kv for kv in args.torch_env):
        parser.error("--torch_env takes KEY=VALUE pairs")
    torch_env = dict(kv.split("=", 1) for kv in args.torch_env)
    from mindghost.runtime import num_cores, prepare_environment

    user_isa = "ONEDNN_MAX_CPU_ISA" in os.environ  # read before mindghost sets its own cap
    device, note = prepare_environment(args.device)
    benchmark.check_args(parser, args)
    from mindghost.models import get_default_cfg

    img_size = args.image_size or get_default_cfg(args.model).input_size[-1]
    threads = args.cpu_threads or num_cores()
    wanted = [p for p in SUBPROCESS_PEERS if p in args.peers]
    args.peers = [p for p in args.peers if p not in SUBPROCESS_PEERS]
    skipped, children = {}, {}
    try:
        for name in wanted:
            print(f"starting peer {name} (a child process)", flush=True)
            try:
                children.update(start_subprocess_peers([name], args.model, img_size, args.batch_size, args.num_classes,
                                                       threads, device, args.torch_python, torch_env, user_isa))
            except PeerError as e:
                skipped[name] = str(e)
        report = benchmark.measure(args, device, children, skipped)
    finally:
        for child in children.values():
            child.close()
    if args.floor:
        from benchmarks.floor import format_floor, measure_floor, physical_floor
        from mindghost.models import create_model

        print("measuring matmul GFLOP/s and copy bandwidth for the physical floor", flush=True)
        rates = measure_floor()
        model = create_model(args.model, num_classes=args.num_classes)
        report["floor"] = {"rates": rates, "model": physical_floor(model, report["chans"], img_size, args.batch_size,
                                                                   rates)}
    benchmark.print_report(report)
    if args.floor:
        print(format_floor(report["floor"]))
    if note:
        print(f"note: {note}")
    if args.json:
        benchmark.write_json(report, args.json, argv)
    return 0


if __name__ == "__main__":
    from mindghost.runtime import run_main

    run_main(main, sys.argv[1:])
