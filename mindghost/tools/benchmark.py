"""Speed of a registered model: inference latency and throughput, train-step throughput, compile time, and
the input pipeline alone, against peers: MindCV's model, BN-folded mindghost, mindghost without its CPU depthwise
kernel and onnxruntime in this process;
MindSpore as shipped and PyTorch eager in child processes.

    python scripts/benchmark.py --model ghostnet_100 --img_size 224 --batch 32 \
        --peers fused mindcv onnxruntime shipped torch --torch_python /work/venv-torch/bin/python \
        --repeats 5 --warmup 1 --json bench.json

Tasks (MindSpore in GRAPH mode; every timed call ends with a copy of the output to NumPy, which waits for
the device):
- `latency`: one batch-1 forward (ms).
- `infer`: one batch-`--batch` forward (img/s).
- `train`: one forward + backward + SGD-momentum update of a batch, compiled as a single graph
  (`TrainOneStepCell`); onnxruntime has no train step.
For each task every implementation's first call is timed alone (graph compile + one run), then all get
`--warmup` untimed calls, then `--repeats` rounds run the implementations interleaved (A B C A B C ...), so
that load from other processes falls on all of them alike, each call after `--settle` seconds of idle time (the
thread pools of the previous implementation spin for a while after each call); the median of each is reported,
and speed ratios against torch when it ran (the issue's goals are stated against PyTorch eager), else against mindghost.
Peers that need their own process (`shipped`: MindCV's model with oneDNN's default ISA and MindSpore's default
threads; `shipped_mindghost`; `torch`, `torch_cl`: timm in PyTorch eager, run by `--torch_python`) live in a
persistent child (tools/_bench_worker.py) asked for one timed call at a time over a line protocol, so their
calls interleave with the in-process ones.
The input pipeline (JPEG decode + MindCV's train transforms + batching) is timed per `--workers` value on
`--data_dir` or on a generated folder of JPEGs, and compared with the train-step throughput. `--floor` adds
the physical floor (matmul GFLOP/s and copy bandwidth measured here; MACs and bytes of the model).
"""
import argparse
import datetime
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

IN_PROCESS_PEERS = ("mindcv", "fused", "no_kernel", "onnxruntime")
SUBPROCESS_PEERS = ("shipped", "shipped_mindghost", "torch", "torch_cl")
PEERS = IN_PROCESS_PEERS + SUBPROCESS_PEERS
TASKS = ("latency", "infer", "train")
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bench_worker.py")

# A runner makes `count` timed calls and returns their durations (s): in process, or in a peer's child.
Runner = Callable[[int], List[float]]


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _in_process(fn: Callable[[], object]) -> Runner:
    return lambda count: [_timed(fn) for _ in range(count)]


class PeerError(RuntimeError):
    pass


class SubprocessPeer:
    """A peer in a persistent child process (tools/_bench_worker.py), started once and asked for one
    measurement at a time, so that its calls interleave with the in-process implementations.

    `argv` are the worker's arguments, `python` its interpreter, `env` its environment. The child's stderr
    (library noise) goes to a temporary log whose tail is quoted when the child fails.
    """

    def __init__(self, name: str, python: str, argv: Sequence[str], env: Optional[Dict[str, str]] = None,
                 timeout_s: float = 900.0) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([python, WORKER] + list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=env, text=True, bufsize=1)
        try:
            self.info = self._receive()["info"]
        except PeerError:
            self.close()
            raise

    def _receive(self) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            why = f"gave no reply within {self.timeout_s:.0f} s" if not ready else "exited"
            raise PeerError(f"{self.name}: child {why}{self._log_tail()}")
        message = json.loads(line)
        if not message.get("ok"):
            raise PeerError(f"{self.name}: {message.get('error')}")
        return message

    def _log_tail(self, chars: int = 1500) -> str:
        try:
            self.log.seek(0)
            text = self.log.read().strip()
        except (OSError, ValueError):
            return ""
        return f"; its stderr ends:\n{text[-chars:]}" if text else ""

    def run(self, task: str, count: int = 1) -> List[float]:
        """`count` timed calls of `task` in the child (timed there, so the pipe is not counted)."""
        if self.proc.poll() is not None:
            raise PeerError(f"{self.name}: child has exited")
        self.proc.stdin.write(f"run {task} {count}\n")
        self.proc.stdin.flush()
        return self._receive()["times_s"]

    def runner(self, task: str) -> Runner:
        return lambda count: self.run(task, count)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _ms_infer(model, x: np.ndarray) -> Callable[[], object]:
    import mindspore as ms

    model.set_train(False)
    xt = ms.Tensor(x)
    return lambda: model(xt).asnumpy()


def _ms_train(model, x: np.ndarray, num_classes: int) -> Callable[[], object]:
    import mindspore as ms
    from mindspore import nn

    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Momentum(model.trainable_params(), learning_rate=0.01, momentum=0.9)
    step = nn.TrainOneStepCell(nn.WithLossCell(model, loss), optimizer)
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
                        auto_augment: Optional[str] = None, max_images: int = 0) -> Dict[str, float]:
    """img/s of MindCV's ImageNet train pipeline (decode + transforms + batch), after its first batch."""
    from mindcv.data import create_dataset, create_loader, create_transforms

    dataset = create_dataset("imagenet", root=data_dir, split=split, shuffle=True, num_parallel_workers=workers,
                             num_samples=max_images or None)
    transform = create_transforms("imagenet", image_resize=img_size, is_training=True, auto_augment=auto_augment)
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
        raise ValueError(f"the pipeline timing needs more than one batch of {batch} images in {data_dir}/{split}")
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


def start_subprocess_peers(peers: Sequence[str], model: str, img_size: int, batch: int, num_classes: int,
                           threads: int, device: str, torch_python: str,
                           torch_env: Optional[Dict[str, str]] = None,
                           user_isa: bool = False) -> Dict[str, SubprocessPeer]:
    """Start the children of the requested subprocess peers; a peer that cannot start raises PeerError.

    - `shipped`: MindSpore as a MindCV user gets it: MindCV's model, oneDNN's default ISA (ONEDNN_MAX_CPU_ISA
      removed from the child's environment), MindSpore's default thread count.
    - `shipped_mindghost`: mindghost's model with oneDNN's default ISA (isolates the ISA setting).
    - `torch` / `torch_cl`: timm's model in PyTorch eager (NCHW / channels_last), `threads` threads, run by
      `torch_python`, with `torch_env` added to the environment. PyTorch bundles its own oneDNN, which reads
      ONEDNN_MAX_CPU_ISA too: the torch children keep it only if the user set it (`user_isa`), not mindghost.
    """
    common = ["--model", model, "--img_size", str(img_size), "--batch", str(batch), "--num_classes", str(num_classes),
              "--device", device]
    shipped_env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    torch_env = dict(os.environ if user_isa else shipped_env, **(torch_env or {}))
    specs = {
        "shipped": (sys.executable, ["--framework", "mindspore", "--source", "mindcv", "--threads", "0"], shipped_env),
        "shipped_mindghost": (sys.executable, ["--framework", "mindspore", "--source", "mindghost",
                                               "--threads", str(threads)], shipped_env),
        "torch": (torch_python, ["--framework", "torch", "--source", "timm", "--threads", str(threads)], torch_env),
        "torch_cl": (torch_python, ["--framework", "torch", "--source", "timm", "--threads", str(threads),
                                    "--channels_last"], torch_env),
    }
    started: Dict[str, SubprocessPeer] = {}
    try:
        for name in peers:
            python, argv, env = specs[name]
            if name.startswith("torch") and not torch_python:
                raise PeerError(f"{name}: needs --torch_python (an interpreter with torch and timm)")
            if name.startswith("torch") and not os.path.exists(torch_python):
                raise PeerError(f"{name}: --torch_python {torch_python} does not exist")
            started[name] = SubprocessPeer(name, python, argv + common, env)
    except PeerError:
        for peer in started.values():
            peer.close()
        raise
    return started


def measure_floor(seconds: float = 1.0) -> Dict[str, float]:
    """This machine's float32 matmul rate (NumPy's BLAS and a MindSpore MatMul, all cores) and copy bandwidth
    (NumPy, read + write counted): the denominators of the physical floor."""
    import mindspore as ms
    from mindspore import nn, ops

    def rate(fn, work: float) -> float:
        fn()
        best, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < seconds:
            best = min(best, _timed(fn))
        return work / best

    rng = np.random.default_rng(0)
    out: Dict[str, float] = {}
    # square, and shaped like a 1x1 conv of ghostnet at batch 32 (oc x ic) @ (ic x N*H*W)
    for label, (m, k, n) in {"square_1024": (1024, 1024, 1024), "conv1x1_b32": (120, 40, 32 * 28 * 28)}.items():
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out[f"numpy_sgemm_{label}_gflops"] = rate(lambda: a @ b, 2.0 * m * k * n) / 1e9

        class _MatMul(nn.Cell):
            def construct(self, x, y):
                return ops.matmul(x, y)

        mm, ta, tb = _MatMul(), ms.Tensor(a), ms.Tensor(b)
        out[f"mindspore_matmul_{label}_gflops"] = rate(lambda: mm(ta, tb).asnumpy(), 2.0 * m * k * n) / 1e9
    src = np.ones(64 * 2 ** 20 // 4, np.float32)  # 64 MiB, beyond the caches
    dst = np.empty_like(src)
    out["numpy_copy_gb_per_s"] = rate(lambda: np.copyto(dst, src), 2.0 * src.nbytes) / 1e9
    return out


def count_traffic(model, input_shape: Sequence[int]) -> Dict[str, int]:
    """MACs of conv/linear layers and the float32 bytes they must move at least once (input + output
    activations, weights), from one PyNative forward at `input_shape` (batch included)."""
    import mindspore as ms
    from mindspore import nn

    totals = {"macs": 0, "activation_bytes": 0, "weight_bytes": 0}

    def hook(cell):
        def fn(_cell, inputs, output):
            out_elems = int(np.prod(output.shape))
            if isinstance(cell, nn.Conv2d):
                kh, kw = cell.kernel_size
                totals["macs"] += out_elems * (cell.in_channels // cell.group) * kh * kw
            else:
                totals["macs"] += out_elems * cell.in_channels
            totals["activation_bytes"] += 4 * (int(np.prod(inputs[0].shape)) + out_elems)
            totals["weight_bytes"] += 4 * sum(int(np.prod(p.shape)) for p in cell.get_parameters())

        return fn

    handles = [c.register_forward_hook(hook(c)) for _, c in model.cells_and_names()
               if isinstance(c, (nn.Conv2d, nn.Dense))]
    previous_mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        model.set_train(False)
        model(ms.Tensor(np.zeros(tuple(input_shape), np.float32)))
    finally:
        for h in handles:
            h.remove()
        ms.set_context(mode=previous_mode)
    return totals


def physical_floor(model, chans: int, img_size: int, batch: int,
                   rates: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    """Lower bounds for one forward at batch 1 and `batch`: 2·MACs over the best measured matmul rate, and the
    bytes conv/linear layers must move over the copy bandwidth."""
    flops_rate = max(v for k, v in rates.items() if k.endswith("_gflops")) * 1e9
    bandwidth = rates["numpy_copy_gb_per_s"] * 1e9
    floors = {}
    for b in sorted({1, batch}):
        t = count_traffic(model, (b, chans, img_size, img_size))
        compute_ms = 2.0 * t["macs"] / flops_rate * 1e3
        memory_ms = (t["activation_bytes"] + t["weight_bytes"]) / bandwidth * 1e3
        floors[f"b{b}"] = dict(t, compute_ms=compute_ms, memory_ms=memory_ms, floor_ms=max(compute_ms, memory_ms))
    return floors


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark a registered model (GRAPH mode), optionally vs peers.")
    parser.add_argument("--model", required=True, help="registered model name")
    parser.add_argument("--img_size", type=int, default=None, help="input resolution (default: the model's cfg)")
    parser.add_argument("--batch", type=int, default=32, help="batch of the throughput and train-step tasks")
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--peers", nargs="*", default=[], choices=PEERS,
                        help="also run, in this process: mindcv (MindCV's model of the same name), fused (mindghost "
                             "with BN folded), no_kernel (mindghost with MindSpore's Conv2D for the depthwise convs "
                             "instead of mindghost's CPU kernel), onnxruntime (the folded model exported to ONNX); "
                             "in a child process "
                             "each: shipped (MindCV's model on MindSpore as shipped: oneDNN's default ISA and "
                             "thread count), shipped_mindghost (mindghost's model, oneDNN's default ISA), torch / "
                             "torch_cl (timm's model in PyTorch eager, NCHW / channels_last; needs --torch_python)")
    parser.add_argument("--torch_python", default="", help="python of a venv with torch + timm, for the torch peers")
    parser.add_argument("--torch_env", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra environment of the torch peers, e.g. OMP_WAIT_POLICY=PASSIVE: on a loaded machine "
                             "PyTorch's spinning OpenMP barriers can make it 10-100x slower")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
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
    parser.add_argument("--floor", action="store_true", help="also measure matmul GFLOP/s and copy bandwidth and "
                        "report the physical floor (MACs / FLOP rate, bytes / bandwidth)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default="", help="write all numbers (and raw samples) to this file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1:
        parser.error("--repeats and --batch must be >= 1")
    if any("=" not in kv for kv in args.torch_env):
        parser.error("--torch_env takes KEY=VALUE pairs")
    torch_env = dict(kv.split("=", 1) for kv in args.torch_env)

    from ..runtime import num_cores, prepare_environment
    from .export import setup_mindspore

    user_isa = "ONEDNN_MAX_CPU_ISA" in os.environ
    device, note = prepare_environment(args.device)
    from ..models import get_default_cfg

    try:
        cfg = get_default_cfg(args.model)
    except ValueError as e:  # names the registered models and close matches
        parser.error(str(e))
    setup_mindspore(device, mode="graph", cpu_threads=args.threads)
    import mindspore as ms

    from ..models import create_model

    threads = args.threads or num_cores()
    img_size = args.img_size or cfg.input_size[-1]
    chans = cfg.input_size[0]
    rng = np.random.default_rng(0)  # the same draws as _bench_worker.make_inputs
    x1 = rng.standard_normal((1, chans, img_size, img_size)).astype(np.float32)
    xb = rng.standard_normal((args.batch, chans, img_size, img_size)).astype(np.float32)

    from ..cpu import accelerate_on_cpu

    builders: Dict[str, Callable[[], object]] = {
        "mindghost": lambda: accelerate_on_cpu(create_model(args.model, num_classes=args.num_classes), device)}
    skipped: Dict[str, str] = {}
    if "no_kernel" in args.peers:
        def without_kernel():
            model = create_model(args.model, num_classes=args.num_classes)
            return accelerate_on_cpu(model, device, depthwise_kernel=False)

        builders["no_kernel"] = without_kernel
    if "mindcv" in args.peers:
        from mindcv.models import create_model as mindcv_create_model
        from mindcv.models import list_models as mindcv_list_models

        if args.model in mindcv_list_models():
            builders["mindcv"] = lambda: mindcv_create_model(args.model, num_classes=args.num_classes)
        else:
            skipped["mindcv"] = f"MindCV has no model named {args.model}"
    onnx_paths: Dict[int, str] = {}
    tmp = tempfile.TemporaryDirectory(prefix="mindghost_bench_")
    if "fused" in args.peers or "onnxruntime" in args.peers:
        from .fuse import fuse_bn

        fused = fuse_bn(create_model(args.model, num_classes=args.num_classes), input_shape=x1.shape)
        if "fused" in args.peers:
            builders["fused"] = lambda: accelerate_on_cpu(fused, device)  # after the plain copy went to ONNX
    if "onnxruntime" in args.peers:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            skipped["onnxruntime"] = "onnxruntime is not installed (pip install onnxruntime)"
        else:
            from .export import export_model

            needed = [(1, x1)] if "latency" in args.tasks else []
            needed += [(args.batch, xb)] if "infer" in args.tasks else []
            for b, x in needed:
                if b not in onnx_paths:
                    onnx_paths[b] = export_model(fused, x, os.path.join(tmp.name, f"b{b}"), "onnx")
    children: Dict[str, SubprocessPeer] = {}
    for name in [p for p in SUBPROCESS_PEERS if p in args.peers]:
        if name == "shipped" and "mindcv" in skipped:
            skipped[name] = skipped["mindcv"]
            continue
        print(f"starting peer {name} (a child process)", flush=True)
        try:
            children.update(start_subprocess_peers([name], args.model, img_size, args.batch, args.num_classes,
                                                   threads, device, args.torch_python, torch_env, user_isa))
        except PeerError as e:
            skipped[name] = str(e)
    for peer, why in skipped.items():
        print(f"skipping {peer}: {why}")

    infer_models = {name: build() for name, build in builders.items()}
    load_before = os.getloadavg()
    raw: Dict[str, Dict[str, Dict[str, float]]] = {}
    try:
        for task in args.tasks:
            if task == "infer" and args.batch == 1 and "latency" in args.tasks:
                continue  # the same measurement
            x = x1 if task == "latency" else xb
            runners: Dict[str, Runner] = {}
            for name in infer_models:
                if task == "train":
                    if name == "fused":
                        continue  # folded BN is an inference-only transform
                    # a fresh copy: training changes it
                    runners[name] = _in_process(_ms_train(builders[name](), x, args.num_classes))
                else:
                    runners[name] = _in_process(_ms_infer(infer_models[name], x))
            if task != "train" and onnx_paths:
                runners["onnxruntime"] = _in_process(_ort_infer(onnx_paths[x.shape[0]], x, threads))
            for name, child in children.items():
                runners[name] = child.runner(task)
            print(f"timing {task} (batch {x.shape[0]}): {', '.join(runners)}: first call, {args.warmup} warm-up, "
                  f"{args.repeats} interleaved rounds", flush=True)
            raw[task] = run_interleaved(runners, args.warmup, args.repeats, args.settle)
    finally:
        peers_info = {name: child.info for name, child in children.items()}
        for child in children.values():
            child.close()
    if "infer" not in raw and args.batch == 1 and "latency" in raw:
        raw["infer"] = raw["latency"]
    load_after = os.getloadavg()
    results = summarize(raw, args.batch)
    reference = "torch" if "torch" in results else "mindghost"

    pipeline, pipelines = None, []
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
                                      args.auto_augment, args.pipeline_images if args.data_dir else 0)
            row.update(source=source, auto_augment=args.auto_augment)
            train = results.get("mindghost", {}).get("train_img_per_s")
            if train:
                row["vs_train_step"] = row["img_per_s"] / train
            pipelines.append(row)
        pipeline = pipelines[0] if pipelines else None
    floor = None
    if args.floor:
        print("measuring matmul GFLOP/s and copy bandwidth for the physical floor", flush=True)
        rates = measure_floor()
        floor = {"rates": rates, "model": physical_floor(create_model(args.model, num_classes=args.num_classes),
                                                         chans, img_size, args.batch, rates)}
    tmp.cleanup()

    print(f"\n{args.model} at {img_size}x{img_size}, {device}, MindSpore {ms.__version__} GRAPH mode, "
          f"{threads} threads; median of {args.repeats} after {args.warmup} warm-up, {args.settle:g} s idle before "
          f"each call "
          f"(load average {load_before[0]:.1f} → {load_after[0]:.1f}); "
          f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"(×: speed relative to {reference}, >1 = faster than {reference})")
    print(format_table(results, args.batch, reference))
    for name, info in peers_info.items():
        print(f"  {name}: child process, {json.dumps(info, sort_keys=True)}")
    for row in pipelines:
        line = (f"input pipeline (decode + train transforms, {row['workers']} workers): "
                f"{row['img_per_s']:.1f} img/s")
        if "vs_train_step" in row:
            line += (f" = {row['vs_train_step']:.1f}× the train step ({results['mindghost']['train_img_per_s']:.1f}"
                     f" img/s; goal ≥ 2×; when both share these {num_cores()} cores, the sum of both costs counts)")
        print(line)
    if floor:
        rates = floor["rates"]
        print("physical floor: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
        for b, f in floor["model"].items():
            print(f"  {b}: {f['macs'] / 1e6:.0f} M MACs → {f['compute_ms']:.2f} ms; "
                  f"{(f['activation_bytes'] + f['weight_bytes']) / 2 ** 20:.1f} MiB → {f['memory_ms']:.2f} ms; "
                  f"floor {f['floor_ms']:.2f} ms")
    if note:
        print(f"note: {note}")
    if args.json:
        versions = {"mindspore": ms.__version__}
        for mod in ("mindcv", "onnxruntime"):
            try:
                versions[mod] = __import__(mod).__version__
            except ImportError:
                pass
        report = {"model": args.model, "img_size": img_size, "batch": args.batch, "repeats": args.repeats,
                  "warmup": args.warmup, "settle_s": args.settle, "device": device, "threads": threads,
                  "versions": versions,
                  "date": datetime.datetime.now().isoformat(timespec="seconds"),
                  "load_average": {"before": load_before[0], "after": load_after[0]},
                  "reference": reference, "env": {"ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA")},
                  "command": " ".join(sys.argv) if argv is None else " ".join(argv),
                  "results": results, "peers": peers_info, "pipeline": pipeline, "pipelines": pipelines,
                  "floor": floor, "skipped": skipped,
                  "raw": {task: {n: r["samples_s"] for n, r in per.items()} for task, per in raw.items()}}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")
    return 0
