import os

# Set before any Qt or torch import: no display needed, and torch's idle threads do not spin.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("EMBEDDING_EXPLORER_DATA", os.path.join(os.path.dirname(__file__), ".data-cache"))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_threads():
    import torch

    torch.manual_seed(0)
    yield
