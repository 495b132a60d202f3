"""Export a registered model to MINDIR / ONNX (AIR on Ascend) with BatchNorm folded (see mindghost/tools/export.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mindghost import runtime  # noqa: E402
from mindghost.tools.export import main  # noqa: E402

if __name__ == "__main__":
    runtime.run_main(main, sys.argv[1:])  # exits with main's code, without MindSpore's noise at shutdown
