"""Redraw a run's training curves and print its summary (see mindghost/tools/plots.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mindghost import runtime  # noqa: E402
from mindghost.tools.plots import main  # noqa: E402

if __name__ == "__main__":
    runtime.run_main(main, sys.argv[1:])  # exits with main's code, without MindSpore's noise at shutdown
