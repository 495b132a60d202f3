"""Speed of a registered model in this process: inference latency and throughput, train-step throughput and
compile time, optionally against in-process peers, and the input pipeline alone.

    python -m mindghost.tools.benchmark --model ghostnet_100 --img_size 224 --batch 32 \
        --peers fused no_kernel mindcv onnxruntime --repeats 5 --warmup 1 --json bench.json

Implementations: `mindghost` (the model as train.py/validate.py run it: `create_model`, then on CPU
`mindghost.cpu.accelerate`), and on request `fused` (BN folded, the validate/export path), `no_kernel` (mindghost
without its CPU depthwise kernel), `mindcv` (MindCV's model of the same name), `onnxruntime` (the folded model
exported to ONNX). Peers that need their own process (MindSpore as shipped, PyTorch eager) and the physical
floor are research harnesses outside the package: `python benchmarks/compare.py` (see benchmarks/README.md).

Tasks (MindSpore in GRAPH mode; every timed call ends with a copy of the output to NumPy, which waits for
the device):
- `latency`: one batch-1 forward (ms).
- `infer`: one batch-`--batch` forward (img/s).
- `train`: one forward + backward + SGD-momentum update of a batch, compiled as a single graph
  (`TrainOneStepCell`); onnxruntime has no train step.
For each task every implementation's first call is timed alone (graph compile + one run), then all get
`--warmup` untimed calls, then `--repeats` rounds run the implementations interleaved (A B C A B C ...), so
that load from other processes falls on all of them alike, each call after `--settle` seconds of idle time (the
thread pools of the previous implementation spin for a while after each call); the median of each is reported
with speed ratios against mindghost (against torch when benchmarks/compare.py ran it).
The input pipeline (JPEG decode + MindCV's train transforms + batching) is timed per `--workers` value on
`--data_dir` or on a generated folder of JPEGs, and compared with the train-step throughput.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

IN_PROCESS_PEERS = ("mindcv", "fused", "no_kernel", "onnxruntime")
TASKS = ("latency", "infer", "train")
PEER_HELP = ("also run: mindcv (MindCV's model of the same name), fused (mindghost with BN folded), no_kernel "
             "(mindghost with MindSpore's Conv2D for the depthwise convs instead of mindghost's CPU kernel), "
             "onnxruntime (the folded model exported to ONNX)")

# A runner makes `count` timed calls and returns their durations (s): in process, or in a peer's child.
Runner = Callable[[int], List[float]]


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _in_process(fn: Callable[[], object]) -> Runner:
    return lambda count: [_timed(fn) for _ in range(count)]


def _ms_infer(model, x: np.ndarray) -> Callable[[], object]:
    import mindspore as ms

    model.set_train(False)
    xt = ms.Tensor(x)
    return lambda: model(xt).asnumpy()


def _ms_train(model, x: np.ndarray, num_classes: int, teacher=None) -> Callable[[], object]:
    """`teacher` (a model, or None): a knowledge-distillation step (train.py's WithDistillLoss, teacher frozen)."""
    import mindspore as ms
    from mindspore import nn

    from ..training.distill import WithDistillLoss

    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Momentum(model.trainable_params(), learning_rate=0.01, momentum=0.9)
    net = nn.WithLossCell(model, loss) if teacher is None else WithDistillLoss(model, teacher, loss)
    step = nn.TrainOneStepCell(net, optimizer)
    step.set_train(True)
    xt = ms.Tensor(x)
    yt = ms.Tensor(np.arange(x.shape[0], dtype=np.int32) % num_classes)
    return lambda: step(xt, yt).asnumpy()


def _ort_infer(path: str, x: np.ndarray, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # onnxruntime's workers busy-wait after each run by default; interleaved, that spinning would eat the
    # cores of whichever implementation runs next (measured: mindghost 3-10x slower right after it)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def run_interleaved(runners: Dict[str, Runner], warmup: int, repeats: int,
                    settle_s: float = 0.0) -> Dict[str, Dict[str, float]]:
    """First call of each (alone), warm-up, then `repeats` interleaved rounds, each timed call after `settle_s` of
    idle time (so that the previous implementation's spinning worker threads have gone to sleep). Seconds."""
    first = {name: run(1)[0] for name, run in runners.items()}
    for run in runners.values():
        if warmup:
            run(warmup)
    samples: Dict[str, List[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            time.sleep(settle_s)
            samples[name].extend(run(1))
    return {name: {"first_call_s": first[name], "median_s": statistics.median(samples[name]),
                   "min_s": min(samples[name]), "samples_s": samples[name]} for name in runners}


def make_jpeg_folder(root: str, num_images: int, size=(500, 375), classes: int = 2, seed: int = 0) -> str:
    """An ImageFolder `<root>/train/<class>/*.jpg` of smooth random images of ImageNet-like size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(num_images):
        folder = os.path.join(root, "train", f"class_{i % classes}")
        os.makedirs(folder, exist_ok=True)
        fx, fy, phase = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.3)]
        base = np.stack([np.sin(xx * fx + phase + c) * np.cos(yy * fy - c) for c in range(3)], -1)
        img = (base * 100 + 128 + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)
    return root


def time_input_pipeline(data_dir: str, split: str, img_size: int, batch: int, workers: int,
                        auto_augment: Optional[str] = None, max_images: int = 0, in_channels: int = 3
                        ) -> Dict[str, float]:
    """img/s of MindCV's ImageNet train pipeline (decode + transforms + batch), after its first batch; a grey-scale
    model's (in_channels 1) ends with training's grey conversion."""
    from mindcv.data import create_dataset, create_loader, create_transforms
    from mindcv.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from ..data.channels import channel_mean_std, channel_tail

    dataset = create_dataset("imagenet", root=data_dir, split=split, shuffle=True, num_parallel_workers=workers,
                             num_samples=max_images or None)
    transform = create_transforms("imagenet", image_resize=img_size, is_training=True, auto_augment=auto_augment)
    if in_channels != 3:  # MindCV's constants are in 0-255 units
        mean, std, _, _ = channel_mean_std(None, None, [m / 255 for m in IMAGENET_DEFAULT_MEAN],
                                           [s / 255 for s in IMAGENET_DEFAULT_STD], in_channels)
        transform = channel_tail(transform, in_channels, mean, std)
    loader = create_loader(dataset, batch_size=batch, drop_remainder=False, is_training=True, transform=transform,
                           num_parallel_workers=workers)
    iterator = loader.create_tuple_iterator(output_numpy=True, num_epochs=1)
    start = time.perf_counter()
    images = 0
    first_batch_s = None
    for image, _label in iterator:
        if first_batch_s is None:  # worker start-up and the first decode are not steady state
            first_batch_s = time.perf_counter() - start
            start = time.perf_counter()
            continue
        images += image.shape[0]
    elapsed = time.perf_counter() - start
    if images == 0:
        from ..errors import UsageError

        raise UsageError(f"the pipeline timing needs more than one batch of {batch} images in {data_dir}/{split}: "
                         "raise --pipeline_images, lower --batch, or pass --no_pipeline")
    return {"img_per_s": images / elapsed, "images_timed": images, "first_batch_s": first_batch_s,
            "workers": workers}


def _ratio(reference: float, other: float) -> float:
    return reference / other if other > 0 else float("nan")


def summarize(raw: Dict[str, Dict[str, Dict[str, float]]], batch: int,
              references: Sequence[str] = ("mindghost", "torch")) -> Dict[str, Dict[str, float]]:
    """Per implementation: latency (ms), img/s, first-call seconds; and speed ratios `<task>_speed_vs_<ref>`
    (>1: faster than ref) against each reference that was measured (mindghost always, torch when present)."""
    results: Dict[str, Dict[str, float]] = {}
    for task, per_impl in raw.items():
        for name, r in per_impl.items():
            out = results.setdefault(name, {})
            if task == "latency":
                out["latency_ms"] = r["median_s"] * 1e3
                out["latency_first_call_s"] = r["first_call_s"]
            elif task == "infer":
                out["infer_img_per_s"] = batch / r["median_s"]
                out["infer_step_ms"] = r["median_s"] * 1e3
                out["infer_first_call_s"] = r["first_call_s"]
            else:
                out["train_img_per_s"] = batch / r["median_s"]
                out["train_step_ms"] = r["median_s"] * 1e3
                out["train_first_call_s"] = r["first_call_s"]
    for reference in references:
        for task, per_impl in raw.items():
            ref = per_impl.get(reference)
            if ref is None:
                continue
            for name, r in per_impl.items():
                if name != reference:
                    results[name][f"{task}_speed_vs_{reference}"] = _ratio(ref["median_s"], r["median_s"])
    return results


def format_table(results: Dict[str, Dict[str, float]], batch: int, reference: str = "mindghost") -> str:
    """Markdown table; the ratio in brackets is the speed against `reference` (>1: faster than it)."""
    def cell(row, key, fmt, ratio_key=None):
        if key not in row:
            return "–"
        text = format(row[key], fmt)
        if ratio_key and ratio_key in row:
            text += f" ({row[ratio_key]:.2f}×)"
        return text

    lines = [f"| implementation | latency b1 (ms) | infer b{batch} (img/s) | train b{batch} (img/s) | "
             "first call: latency / infer / train (s) |", "|---|---|---|---|---|"]
    for name, row in results.items():
        firsts = " / ".join(cell(row, k, ".1f") for k in ("latency_first_call_s", "infer_first_call_s",
                                                           "train_first_call_s"))
        lines.append(f"| {name} | {cell(row, 'latency_ms', '.1f', f'latency_speed_vs_{reference}')} | "
                     f"{cell(row, 'infer_img_per_s', '.1f', f'infer_speed_vs_{reference}')} | "
                     f"{cell(row, 'train_img_per_s', '.1f', f'train_speed_vs_{reference}')} | {firsts} |")
    return "\n".join(lines)


def build_parser(peers: Sequence[str] = IN_PROCESS_PEERS, peer_help: str = PEER_HELP,
                 prog: str = "python -m mindghost.tools.benchmark") -> argparse.ArgumentParser:
    """The benchmark's options; benchmarks/compare.py extends it with its subprocess peers."""
    parser = argparse.ArgumentParser(prog=prog, description="Benchmark a registered model (GRAPH mode), "
                                     "optionally against peers.")
    parser.add_argument("--model", required=True, help="registered model name")
    parser.add_argument("--img_size", type=int, default=None,
                        help="input resolution (default: the checkpoint's recorded eval size, else the model's cfg)")
    parser.add_argument("--batch", type=int, default=32, help="batch of the throughput and train-step tasks")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="classifier size (default: the checkpoint's recorded one, else the model's cfg)")
    parser.add_argument("--ckpt_path", default="", help="optional weights to time: their recorded image size, "
                        "class count and input channels are used unless given (the speed hardly depends on them)")
    parser.add_argument("--peers", nargs="*", default=[], choices=list(peers), help=peer_help)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--teacher", default="", help="train task: a knowledge-distillation step with this registered "
                        "model as the frozen teacher (random weights, fused form, as train.py runs it)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per task (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per implementation after the first")
    parser.add_argument("--settle", type=float, default=0.2, metavar="SECONDS",
                        help="idle time before each timed call: OpenMP/oneDNN/MindSpore worker threads spin for a "
                             "while after a call and would otherwise slow down whichever implementation runs next")
    parser.add_argument("--data_dir", default="", help="ImageFolder root for the input-pipeline timing "
                        "(default: generate --pipeline_images JPEGs in a temp folder)")
    parser.add_argument("--data_split", default="train")
    parser.add_argument("--pipeline_images", type=int, default=512,
                        help="images to time the input pipeline on (generated, or the first of --data_dir)")
    parser.add_argument("--auto_augment", default=None, help="e.g. randaug-m9-mstd0.5, as in the recipes")
    parser.add_argument("--no_pipeline", action="store_true", help="skip the input-pipeline timing")
    parser.add_argument("--workers", type=int, nargs="+", default=[0],
                        help="pipeline workers; several values time each (default: one per core)")
    parser.add_argument("--threads", type=int, default=0, help="CPU kernel threads (default: one per core)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default="", help="write all numbers (and raw samples) to this file")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse impossible values before anything is built (argparse's error: usage line, exit 2)."""
    if args.repeats < 1 or args.batch < 1:
        parser.error("--repeats and --batch must be >= 1")
    from ..models import get_default_cfg

    try:
        get_default_cfg(args.model)
    except ValueError as e:  # names the registered models and close matches
        parser.error(str(e))
    resolve_checkpoint_args(args)


def resolve_checkpoint_args(args: argparse.Namespace) -> None:
    """Fill `args.img_size`, `args.num_classes` and `args.in_channels`: the user's value, else what `--ckpt_path`
    records (a model trained at 32 px is timed at 32 px, and said so), else the model's default cfg. A checkpoint of
    another model, another class count or a run directory is refused (CheckpointError, exit 2)."""
    from ..inference import resolve_inference_setup, setup_from_checkpoint

    explicit = {"image_size": args.img_size, "num_classes": args.num_classes}
    flags = {"image_size": "--img_size"}
    if getattr(args, "ckpt_path", ""):
        _, setup = setup_from_checkpoint(args.ckpt_path, args.model, explicit, flags)
        for line in setup.messages():
            print(line)
    else:
        setup = resolve_inference_setup({}, args.model, explicit, flags=flags)
    args.img_size, args.num_classes, args.in_channels = setup.image_size, setup.num_classes, setup.in_channels


def _model_builders(args, device: str, skipped: Dict[str, str],
                    trace_shape: Sequence[int]) -> Dict[str, Callable[[], object]]:
    """A fresh model per call for each in-process MindSpore implementation (a train step changes its model);
    `trace_shape` is the batch-1 input shape BN folding traces with."""
    from ..models import create_model, fuse_bn, reparameterize_model

    def mindghost_model(fuse: bool = False, train: bool = False, **accelerate_kwargs):
        model = create_model(args.model, num_classes=args.num_classes, in_channels=args.in_channels,
                             checkpoint_path=getattr(args, "ckpt_path", "") or None)
        if not train:  # inference runs the fused form, as validate and export do (GhostNetV3; else a no-op)
            reparameterize_model(model)
        if fuse:
            model = fuse_bn(model, input_shape=trace_shape)
        if device == "CPU":  # the speed-ups train.py and validate.py apply on CPU
            from ..cpu import accelerate

            accelerate(model, **accelerate_kwargs)
        return model

    builders: Dict[str, Callable[..., object]] = {"mindghost": mindghost_model}
    if "fused" in args.peers:
        builders["fused"] = lambda train=False: mindghost_model(fuse=True, train=train)
    if "no_kernel" in args.peers:
        builders["no_kernel"] = lambda train=False: mindghost_model(train=train, depthwise_kernel=False)
    if "mindcv" in args.peers:
        from mindcv.models import create_model as mindcv_create_model
        from mindcv.models import list_models as mindcv_list_models

        if args.model in mindcv_list_models():
            builders["mindcv"] = lambda train=False: mindcv_create_model(args.model, num_classes=args.num_classes,
                                                                         in_channels=trace_shape[1])
        else:
            skipped["mindcv"] = f"MindCV has no model named {args.model}"
    return builders


def _teacher(args, device: str):
    """The --teacher model as train.py runs it (fused form, CPU passes), or None."""
    if not getattr(args, "teacher", ""):
        return None
    from ..models import create_model, reparameterize_model

    teacher = reparameterize_model(create_model(args.teacher, num_classes=args.num_classes))
    if device == "CPU":
        from ..cpu import accelerate

        accelerate(teacher)
    return teacher


def measure(args: argparse.Namespace, device: str, children: Optional[Dict[str, object]] = None,
            skipped: Optional[Dict[str, str]] = None) -> dict:
    """Time every implementation; returns the report (what --json writes).

    `children` are peers in other processes (benchmarks/peers.py): objects with `runner(task) -> Runner` and
    `info`; their calls interleave with the in-process ones. `skipped` maps peers that could not run to why.
    """
    from ..runtime import num_cores, setup_context

    setup_context(device, mode="graph", cpu_threads=args.threads)
    import mindspore as ms

    from ..models import get_default_cfg

    children = children or {}
    skipped = dict(skipped or {})
    cfg = get_default_cfg(args.model)
    threads = args.threads or num_cores()
    img_size = args.img_size or cfg.input_size[-1]
    chans = getattr(args, "in_channels", None) or cfg.input_size[0]
    rng = np.random.default_rng(0)  # the same draws as benchmarks/worker.make_inputs
    x1 = rng.standard_normal((1, chans, img_size, img_size)).astype(np.float32)
    xb = rng.standard_normal((args.batch, chans, img_size, img_size)).astype(np.float32)

    builders = _model_builders(args, device, skipped, x1.shape)
    tmp = tempfile.TemporaryDirectory(prefix="mindghost_bench_")
    onnx_paths: Dict[int, str] = {}
    if "onnxruntime" in args.peers:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            skipped["onnxruntime"] = "onnxruntime is not installed (pip install onnxruntime)"
        else:
            from ..models import create_model, fuse_bn, reparameterize_model
            from .export import export_model

            plain = fuse_bn(reparameterize_model(create_model(args.model, num_classes=args.num_classes,
                                                              in_channels=chans)),
                            input_shape=x1.shape)
            needed = [(1, x1)] if "latency" in args.tasks else []
            needed += [(args.batch, xb)] if "infer" in args.tasks else []
            for b, x in needed:
                onnx_paths.setdefault(b, export_model(plain, x, os.path.join(tmp.name, f"b{b}"), "onnx"))
    for peer, why in skipped.items():
        print(f"skipping {peer}: {why}")

    infer_models = {name: build() for name, build in builders.items()}
    load_before = os.getloadavg()
    raw: Dict[str, Dict[str, Dict[str, float]]] = {}
    for task in args.tasks:
        if task == "infer" and args.batch == 1 and "latency" in args.tasks:
            continue  # the same measurement
        x = x1 if task == "latency" else xb
        runners: Dict[str, Runner] = {}
        for name in infer_models:
            if task == "train":
                if name == "fused":
                    continue  # folded BN is an inference-only transform
                runners[name] = _in_process(_ms_train(builders[name](train=True), x, args.num_classes,  # a fresh copy
                                                      _teacher(args, device)))
            else:
                runners[name] = _in_process(_ms_infer(infer_models[name], x))
        if task != "train" and onnx_paths:
            runners["onnxruntime"] = _in_process(_ort_infer(onnx_paths[x.shape[0]], x, threads))
        for name, child in children.items():
            runners[name] = child.runner(task)
        print(f"timing {task} (batch {x.shape[0]}): {', '.join(runners)}: first call, {args.warmup} warm-up, "
              f"{args.repeats} interleaved rounds", flush=True)
        raw[task] = run_interleaved(runners, args.warmup, args.repeats, args.settle)
    if "infer" not in raw and args.batch == 1 and "latency" in raw:
        raw["infer"] = raw["latency"]
    load_after = os.getloadavg()
    results = summarize(raw, args.batch)

    pipelines = []
    if not args.no_pipeline:
        data_dir, source = args.data_dir, args.data_dir
        if not data_dir:
            data_dir = make_jpeg_folder(os.path.join(tmp.name, "images"), args.pipeline_images)
            source = f"{args.pipeline_images} generated 500x375 JPEGs"
        for workers in args.workers:
            workers = workers or num_cores()
            if workers > (os.cpu_count() or 1):  # MindSpore's dataset refuses more workers than CPUs
                skipped[f"pipeline_workers_{workers}"] = f"MindSpore allows at most {os.cpu_count()} workers here"
                print(f"skipping the input pipeline with {workers} workers: {skipped[f'pipeline_workers_{workers}']}")
                continue
            print(f"timing the input pipeline on {source} with {workers} workers", flush=True)
            row = time_input_pipeline(data_dir, args.data_split, img_size, args.batch, workers,
                                      args.auto_augment, args.pipeline_images if args.data_dir else 0, chans)
            row.update(source=source, auto_augment=args.auto_augment)
            train = results.get("mindghost", {}).get("train_img_per_s")
            if train:
                row["vs_train_step"] = row["img_per_s"] / train
            pipelines.append(row)
    tmp.cleanup()

    versions = {"mindspore": ms.__version__}
    for mod in ("mindcv", "onnxruntime"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return {"model": args.model, "teacher": getattr(args, "teacher", "") or None, "img_size": img_size,
            "chans": chans, "batch": args.batch, "repeats": args.repeats,
            "warmup": args.warmup, "settle_s": args.settle, "device": device, "threads": threads,
            "versions": versions, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "load_average": {"before": load_before[0], "after": load_after[0]},
            "reference": "torch" if "torch" in results else "mindghost",
            "env": {"ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA")},
            "results": results, "peers": {name: child.info for name, child in children.items()},
            "pipeline": pipelines[0] if pipelines else None, "pipelines": pipelines, "skipped": skipped,
            "raw": {task: {n: r["samples_s"] for n, r in per.items()} for task, per in raw.items()}}


def print_report(report: dict) -> None:
    reference, results = report["reference"], report["results"]
    print(f"\n{report['model']} at {report['img_size']}x{report['img_size']}, {report['device']}, MindSpore "
          f"{report['versions']['mindspore']} GRAPH mode, {report['threads']} threads; median of {report['repeats']} "
          f"after {report['warmup']} warm-up, {report['settle_s']:g} s idle before each call (load average "
          f"{report['load_average']['before']:.1f} → {report['load_average']['after']:.1f}); {report['date']}")
    print(f"(×: speed relative to {reference}, >1 = faster than {reference})")
    print(format_table(results, report["batch"], reference))
    for name, info in report["peers"].items():
        print(f"  {name}: child process, {json.dumps(info, sort_keys=True)}")
    for row in report["pipelines"]:
        line = f"input pipeline (decode + train transforms, {row['workers']} workers): {row['img_per_s']:.1f} img/s"
        if "vs_train_step" in row:
            line += (f" = {row['vs_train_step']:.1f}× the train step ({results['mindghost']['train_img_per_s']:.1f}"
                     " img/s; goal ≥ 2×; when both share the cores, the sum of both costs counts)")
        print(line)


def write_json(report: dict, path: str, argv: Optional[Sequence[str]]) -> None:
    report = dict(report, command=" ".join(sys.argv if argv is None else argv))
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {path}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..runtime import prepare_environment

    device, note = prepare_environment(args.device)  # before MindSpore loads: the CPU fast path
    check_args(parser, args)
    report = measure(args, device)
    print_report(report)
    if note:
        print(f"note: {note}")
    if args.json:
        write_json(report, args.json, argv)
    return 0


def cli() -> None:
    """Console entry point (`mindghost-benchmark`): exits through `runtime.run_main`."""
    from ..runtime import run_main

    run_main(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
