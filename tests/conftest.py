import os
from pathlib import Path

import pytest
from hypothesis import settings

# Deterministic property tests: the same examples on every run and every machine.
settings.register_profile("acnzip", derandomize=True, deadline=None, max_examples=60,
                          print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "acnzip"))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """../shared/datasets beside the project root; tests that need it skip without it."""
    if not SHARED.is_dir():
        pytest.skip(f"real datasets not found at {SHARED} (../shared/datasets beside the repo)")
    return SHARED
