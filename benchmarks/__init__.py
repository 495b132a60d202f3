"""Research harnesses around `mindghost.tools.benchmark`: peers in child processes (MindSpore as shipped,
PyTorch eager), the physical floor, and the measurement diaries (RESULTS.md). Not part of the package; run
from the repository root. Importing this folder loads neither MindSpore nor torch."""
