"""Embedding Explorer's engine: data, encoders, methods, training jobs, metrics, runs.

Never imports Qt. Usable from a script, the command line or a remote GPU box.
"""
import os

# torch's OpenMP threads spin while they wait; on a 2-core machine a spinning worker starves the
# GUI thread (a digits step went from 60 ms to 1.3 s here). PASSIVE must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
