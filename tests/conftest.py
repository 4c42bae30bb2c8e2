import os

# Set before any Qt or torch import: no display needed.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("EMBEDDING_EXPLORER_DATA", os.path.join(os.path.dirname(__file__), ".data-cache"))

import engine  # noqa: E402,F401  (before any test module loads torch: it sets OMP_WAIT_POLICY)
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_threads():
    import torch

    torch.manual_seed(0)
    yield
