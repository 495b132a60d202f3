"""Print a markdown table of parameters and MACs for registered models (see mindghost/tools/profile.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mindghost.tools.profile import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
