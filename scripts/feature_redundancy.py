"""Feature-map redundancy figure (GhostNet Figure 1) for one model or two (see mindghost/tools/redundancy.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mindghost.tools.redundancy import main  # noqa: E402

if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # skips MindSpore 2.10's `Cell.__del__ ... total_instance_count` noise at interpreter exit
