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


@pytest.fixture(scope="session")
def ci_clip():
    """A ci-preset CLIP trained for its few steps (seconds): the prior, decoder and upsampler read its embeddings."""
    # imported here, not at the top: minidalle needs open_clip, and pytest_configure's message about a missing
    # peer must come first
    from minidalle.clip import train as clip_train
    from minidalle.clip.model import CLIP, clip_config
    from minidalle.runtime import seed_everything

    seed_everything(0)
    model = CLIP(clip_config("ci"))
    clip_train.train(model, show_progress=False)
    return model.eval()
