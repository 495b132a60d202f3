#!/usr/bin/env python
"""Convert PyTorch or MindCV weights into a mindghost checkpoint (see docs/convert.md).

    python scripts/convert_weights.py --model ghostnet_100 --src state_dict_73.98.pth --out ghostnet_100_official.ckpt

Exit codes: 0 converted; 2 refused (missing or unsafe source, mismatched keys, existing --out), nothing written.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("GLOG_v", "3")  # set before MindSpore loads: its C++ warnings would flood the console

from mindghost.convert.convert import main  # noqa: E402

if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # skips MindSpore 2.10's `Cell.__del__ ... total_instance_count` noise at interpreter exit
