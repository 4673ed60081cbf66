import subprocess
import sys

import pytest
import torch

from minidalle import get_preset, progress, seed_everything
from minidalle.config import PRESETS


def test_preset_from_environment(monkeypatch):
    monkeypatch.setenv("MINIDALLE_PRESET", "cpu")
    assert get_preset().name == "cpu" and get_preset("GPU").name == "gpu"
    monkeypatch.delenv("MINIDALLE_PRESET")
    assert get_preset().name == ("gpu" if torch.cuda.is_available() else "cpu")


def test_unknown_preset_names_the_valid_ones(monkeypatch):
    monkeypatch.setenv("MINIDALLE_PRESET", "laptop")
    with pytest.raises(ValueError, match="must be one of ci, cpu, gpu"):
        get_preset()


def test_presets_scale_up():
    ci, cpu, gpu = PRESETS["ci"], PRESETS["cpu"], PRESETS["gpu"]
    assert ci.n_train < cpu.n_train < gpu.n_train and cpu.base_res == 16 and gpu.base_res == 32


def test_seed_everything_reproduces():
    seed_everything(3)
    a = torch.randn(4)
    seed_everything(3)
    assert torch.equal(a, torch.randn(4))


def test_progress_wraps_iterables():
    assert list(progress(range(3), disable=True)) == [0, 1, 2]


def run(*args, env=None):
    import os

    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "minidalle", *args], capture_output=True, text=True, env=e)


def test_cli_help_lists_subcommands():
    out = run("--help")
    assert out.returncode == 0 and all(w in out.stdout for w in ("info", "data", "oracle"))


def test_cli_preview_writes_a_png(tmp_path):
    out = run("data", "preview", "--out", str(tmp_path / "p.png"), "--n", "4")
    assert out.returncode == 0 and "wrote" in out.stdout
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_reads_and_checks_a_png(tmp_path):
    from PIL import Image

    from minidalle.world.render import render_scenes
    from minidalle.world.scenes import Obj, Scene

    img = render_scenes([Scene((Obj("triangle", "yellow", "large", 0.5, 0.5),))], 32)[0]
    Image.fromarray((img * 255).byte().permute(1, 2, 0).numpy()).save(tmp_path / "t.png")
    out = run("oracle", "read", str(tmp_path / "t.png"))
    assert "large yellow triangle" in out.stdout
    out = run("oracle", "check", str(tmp_path / "t.png"), "a yellow triangle")
    assert "exact" in out.stdout and out.stdout.split("exact")[1].split()[0] == "yes"
    out = run("oracle", "check", str(tmp_path / "t.png"), "a mauve triangle")
    assert out.returncode == 2 and "unknown word 'mauve'" in out.stderr


def test_cli_unknown_preset_is_one_clear_line():
    out = run("info", env={"MINIDALLE_PRESET": "huge"})
    assert out.returncode == 2 and out.stderr.strip().startswith("error: unknown preset 'huge'")
    assert "Traceback" not in out.stderr


def test_warmup_cosine_and_step_generator():
    from minidalle.runtime import step_generator, warmup_cosine

    lrs = [warmup_cosine(s, 1e-3, 10, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)       # linear warm-up to the peak
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 1e-6      # then down to zero
    assert torch.equal(torch.rand(3, generator=step_generator(0, 7)), torch.rand(3, generator=step_generator(0, 7)))
    assert not torch.equal(torch.rand(3, generator=step_generator(0, 7)), torch.rand(3, generator=step_generator(0, 8)))
