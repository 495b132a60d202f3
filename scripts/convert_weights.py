#!/usr/bin/env python
"""Convert PyTorch or MindCV weights into a mindghost checkpoint (see docs/convert.md).

    python scripts/convert_weights.py --model ghostnet_100 --src state_dict_73.98.pth --out ghostnet_100_official.ckpt

Exit codes: 0 converted; 2 refused (missing or unsafe source, mismatched keys, existing --out), nothing written.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mindghost import runtime  # noqa: E402
from mindghost.convert.convert import main  # noqa: E402

if __name__ == "__main__":
    runtime.run_main(main, sys.argv[1:])  # exits with main's code, without MindSpore's noise at shutdown
