"""Child process of a benchmark peer that cannot share the benchmark's process (see benchmarks/peers.py).

Started once per peer, run by file path (so that a torch-only venv never imports MindSpore or mindghost):

    python benchmarks/worker.py --framework torch --source timm --model ghostnet_100 --img_size 224 --batch 32

Line protocol: the child builds the model, then writes one JSON line `{"ok": true, "info": {...}}` (or
`{"ok": false, "error": "..."}` and exits). Then, for each request line read from stdin:
- `run <task> [count]` (task: latency | infer | train) → `{"ok": true, "times_s": [...]}`: `count` calls, each
  timed inside the child (excludes the pipe). A task's first call includes its setup (graph compile).
- `quit` → the child exits.
Replies go to the original stdout; everything libraries print (MindSpore, oneDNN) is sent to stderr instead,
so it cannot break the protocol.
"""
import argparse
import json
import os
import sys
import time
import traceback
from typing import Callable, Dict, List

import numpy as np

TASKS = ("latency", "infer", "train")


def make_inputs(chans: int, img_size: int, batch: int) -> Dict[str, np.ndarray]:
    """The benchmark's seeded inputs (the parent draws them in the same order)."""
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, chans, img_size, img_size)).astype(np.float32)
    xb = rng.standard_normal((batch, chans, img_size, img_size)).astype(np.float32)
    return {"latency": x1, "infer": xb, "train": xb}


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class _MindSporeRunner:
    def __init__(self, args) -> None:
        import mindspore as ms

        if hasattr(ms, "set_device"):
            ms.set_device(args.device)
        else:
            ms.set_context(device_target=args.device)
        ms.set_context(mode=ms.GRAPH_MODE)
        if args.cpu_threads > 0 and args.device == "CPU":
            from mindspore.device_context.cpu.op_tuning import threads_num

            threads_num(args.cpu_threads)
        if args.source == "mindcv":
            from mindcv.models import create_model

            self.build = lambda: create_model(args.model, num_classes=args.num_classes)
        else:
            sys.path.insert(0, args.repo)
            from mindghost.models import create_model

            def build():  # as the in-process `mindghost` row: the plain model plus the CPU pass
                model = create_model(args.model, num_classes=args.num_classes)
                if args.device == "CPU":
                    from mindghost.cpu import accelerate

                    accelerate(model)
                return model

            self.build = build
        self.ms = ms
        self.inputs = make_inputs(3, args.image_size, args.batch_size)
        self.num_classes = args.num_classes
        self.model = self.build()
        self.fns: Dict[str, Callable[[], object]] = {}
        versions = {"mindspore": ms.__version__}
        if args.source == "mindcv":
            import mindcv

            versions["mindcv"] = mindcv.__version__
        self.info = {"versions": versions, "threads": args.cpu_threads or "MindSpore default",
                     "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA")}

    def fn(self, task: str) -> Callable[[], object]:
        if task not in self.fns:
            ms = self.ms
            x = ms.Tensor(self.inputs[task])
            if task == "train":
                from mindspore import nn

                model = self.build()  # a fresh copy: training changes it
                loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
                optimizer = nn.Momentum(model.trainable_params(), learning_rate=0.01, momentum=0.9)
                step = nn.TrainOneStepCell(nn.WithLossCell(model, loss), optimizer)
                step.set_train(True)
                y = ms.Tensor(np.arange(x.shape[0], dtype=np.int32) % self.num_classes)
                self.fns[task] = lambda: step(x, y).asnumpy()
            else:
                self.model.set_train(False)
                self.fns[task] = lambda: self.model(x).asnumpy()
        return self.fns[task]


class _TorchRunner:
    def __init__(self, args) -> None:
        import torch

        if args.cpu_threads > 0:
            torch.set_num_threads(args.cpu_threads)
        timm = _import_timm()
        self.torch = torch
        self.channels_last = args.channels_last
        self.build = lambda: self._place(timm.create_model(args.model, pretrained=False, num_classes=args.num_classes))
        self.inputs = {task: self._place(torch.from_numpy(x.copy()))
                       for task, x in make_inputs(3, args.image_size, args.batch_size).items()}
        self.num_classes = args.num_classes
        self.model = self.build().eval()
        self.fns: Dict[str, Callable[[], object]] = {}
        self.info = {"versions": {"torch": torch.__version__, "timm": timm.__version__},
                     "threads": torch.get_num_threads(), "channels_last": self.channels_last,
                     "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                     "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA")}

    def _place(self, obj):
        return obj.to(memory_format=self.torch.channels_last) if self.channels_last else obj

    def fn(self, task: str) -> Callable[[], object]:
        if task not in self.fns:
            torch = self.torch
            x = self.inputs[task]
            if task == "train":
                model = self.build().train()
                optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                loss_fn = torch.nn.CrossEntropyLoss()
                y = torch.arange(x.shape[0]) % self.num_classes

                def step():
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(model(x), y)
                    loss.backward()
                    optimizer.step()
                    return loss.item()

                self.fns[task] = step
            else:
                def forward():
                    with torch.inference_mode():
                        return self.model(x).numpy()

                self.fns[task] = forward
        return self.fns[task]


def _import_timm():
    """timm, with an empty stand-in for torchvision where torchvision is broken (benchmarks/torch_compat.py,
    next to this file and so on sys.path when run by path)."""
    from torch_compat import import_timm

    return import_timm()


def serve(args, reply: Callable[[dict], None]) -> None:
    start = time.perf_counter()
    try:
        runner = _TorchRunner(args) if args.framework == "torch" else _MindSporeRunner(args)
    except Exception as e:  # reported to the parent, which skips this peer and says why
        reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
        traceback.print_exc()
        return
    info = dict(runner.info, build_s=time.perf_counter() - start, pid=os.getpid())
    reply({"ok": True, "info": info})
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        try:
            if parts[0] != "run" or len(parts) not in (2, 3) or parts[1] not in TASKS:
                raise ValueError(f"bad request {line.strip()!r}: expected 'run <{'|'.join(TASKS)}> [count]' or 'quit'")
            fn = runner.fn(parts[1])
            times: List[float] = [_timed(fn) for _ in range(int(parts[2]) if len(parts) == 3 else 1)]
            reply({"ok": True, "times_s": times})
        except Exception as e:
            traceback.print_exc()
            reply({"ok": False, "error": f"{type(e).__name__}: {e}"})


def str2bool(value: str) -> bool:
    """mindghost.cli.str2bool (this worker also runs in a torch venv without mindghost)."""
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True/true/1/yes or False/false/0/no, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("mindspore", "torch"), required=True)
    parser.add_argument("--source", choices=("mindghost", "mindcv", "timm"), required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--image_size", type=int, required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--cpu_threads", type=int, default=0, help="0: the library's default")
    parser.add_argument("--channels_last", type=str2bool, nargs="?", const=True, default=False,
                        help="torch: NHWC memory format")
    parser.add_argument("--device", default="CPU", choices=("auto", "CPU", "GPU", "Ascend"))
    parser.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return parser


def main() -> None:
    args = build_parser().parse_args()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints (oneDNN verbose, MindSpore) go to stderr, not into the protocol
    sys.stdout = sys.stderr

    def reply(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    serve(args, reply)
    out.flush()
    sys.stderr.flush()
    os._exit(0)  # skips MindSpore's Cell.__del__ noise at interpreter exit


if __name__ == "__main__":
    main()
