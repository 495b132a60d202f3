"""Training building blocks used by train.py and validate.py (config, optimizer, train step, callbacks,
checkpoints, distributed setup). Importing this package does not import MindSpore."""
