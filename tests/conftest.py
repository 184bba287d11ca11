"""Shared test set-up: headless plotting, caches in a temporary folder, paths to real data."""

import os
import tempfile
from pathlib import Path

import pytest

_CACHE = tempfile.mkdtemp(prefix="rgbtad-test-cache-")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_CACHE, "matplotlib"))
os.environ.setdefault("ORT_CACHE_DIR", os.path.join(_CACHE, "onnxruntime"))
# Tests use tiny models: one thread avoids oversubscription on small shared machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402  (after the thread setting above)

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real data shipped beside the checkout (../shared/data); RGBTAD_SHARED_DATA overrides.
SHARED_DATA = Path(os.environ.get("RGBTAD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA
