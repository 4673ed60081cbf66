"""Helpers shared by the tests (pytest puts this folder on the import path: `from conftest import ...`)."""
import importlib.util

import pytest

# Reference implementations the tests compare against. None is skipped when missing: a test run
# that silently drops its cross-checks would pass for the wrong reason.
PEERS = {"open_clip": "requirements.txt", "diffusers": "requirements-peers.txt"}


def pytest_configure(config):
    missing = [name for name in PEERS if importlib.util.find_spec(name) is None]
    if missing:
        files = sorted({PEERS[name] for name in missing})
        pytest.exit(f"the tests compare against {', '.join(missing)}, which is not installed: run "
                    + " && ".join(f".venv/bin/pip install -r {f}" for f in files) + " (see the README)", returncode=4)


def first_and_last(info: dict, key: str | None = None, k: int = 5) -> tuple[float, float]:
    """Mean logged loss over the first and the last k log steps of a `trainer.fit` run.

    key: a logged part (e.g. "recon") instead of the total loss.
    """
    values = [row[1] if key is None else row[2][key] for row in info["losses"]]
    return sum(values[:k]) / k, sum(values[-k:]) / k
