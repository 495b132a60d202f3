"""Benchmark a registered model against MindCV, onnxruntime, MindSpore as shipped and PyTorch eager
(see mindghost/tools/benchmark.py and docs/performance.md)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mindghost.tools.benchmark import main  # noqa: E402

if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # skips MindSpore 2.10's `Cell.__del__ ... total_instance_count` noise at interpreter exit
