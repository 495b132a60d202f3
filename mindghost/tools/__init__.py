"""Command-line tools around the models: profiling, export, benchmarking, plots."""
