"""dupq: a reproducible pipeline that decides whether two questions ask the same thing."""

import os

# Quiet TensorFlow's C++ logging (CUDA probing on CPU-only machines) before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
