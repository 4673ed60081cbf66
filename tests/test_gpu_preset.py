"""The `gpu` preset's code path, end to end on the CPU at a tiny training size: every kind trains with the gpu
preset's own architecture for two steps, saves, loads back, and the models draw at the gpu preset's resolutions
(GLIDE and the DDPM 32×32; the unCLIP cascade 32×32 → 64×64; DALL·E 32×32). No gpu checkpoint ships; this keeps
the code that would train one working."""
import pytest
import torch

from minidalle import checkpoint, registry
from minidalle.dalle1 import transformer as dalle
from minidalle.dalle2 import unclip
from minidalle.diffusion import ddpm, glide

TINY = {"train.steps": 2, "train.batch": 4, "train.n_train": 32, "train.log_every": 1, "train.warmup": 1}
ORDER = ("clip", "dvae", "ddpm", "glide", "prior", "decoder", "upsampler", "dalle")   # what a kind learns from first


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{kind: (model trained 2 steps at the gpu preset's architecture, its checkpoint path)}."""
    folder, out = tmp_path_factory.mktemp("gpu"), {}
    assert set(ORDER) == set(registry.TRAINABLE)
    for name in ORDER:
        k = registry.kind(name)
        model = registry.build(name, "gpu", TINY)
        dependency = out[k.needs][0] if k.needs else None
        k.train(model, dependency, name=folder / name, show_progress=False)
        out[name] = (model.eval(), folder / name)
    return out


@pytest.mark.parametrize("name", ORDER)
def test_every_kind_trains_saves_and_loads_at_the_gpu_preset(trained, name):
    model, path = trained[name]
    config, _ = registry.config(name, "gpu", TINY)
    again = checkpoint.load_model(registry.kind(name).model, config, path)
    for (key, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu()), (name, key)


def test_the_gpu_preset_draws_at_its_own_resolutions(trained):
    with torch.no_grad():
        assert glide.generate(trained["glide"][0], ["a red circle"], steps=2).shape == (1, 3, 32, 32)
        assert ddpm.sample(trained["ddpm"][0], 1, steps=2).shape == (1, 3, 32, 32)
        pipe = unclip.UnCLIP(*(trained[n][0] for n in ("clip", "prior", "decoder", "upsampler")))
        pictures = unclip.generate(pipe, ["a blue square above a green cross"])
        assert pictures.shape == (1, 3, 64, 64) and 0 <= pictures.min() and pictures.max() <= 1
        images, tokens = dalle.generate(trained["dalle"][0], trained["dvae"][0], ["a red circle"], top_k=8)
        assert images.shape == (1, 3, 32, 32) and tokens.shape == (1, 8, 8)
