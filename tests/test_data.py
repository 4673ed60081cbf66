import torch

from minidalle.world.data import ShapesDataset, cached, generate
from minidalle.world.scenes import SceneSpec


def test_generate_is_deterministic_and_captioned():
    a, b = generate(300, 16, seed=1), generate(300, 16, seed=1)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert a.images.shape == (300, 3, 16, 16) and a.images.dtype == torch.uint8


def test_cache_returns_the_same_data(tmp_path):
    a = cached(200, 32, SceneSpec(), seed=3, cache_dir=tmp_path)
    files = sorted(p.suffix for p in tmp_path.iterdir())
    assert files == [".json", ".safetensors"]
    b = cached(200, 32, SceneSpec(), seed=3, cache_dir=tmp_path)
    assert torch.equal(a.images, b.images) and a.captions == b.captions and torch.equal(a.scenes.xy, b.scenes.xy)
    c = cached(200, 32, SceneSpec(n_objects=(1, 0, 0, 0)), seed=3, cache_dir=tmp_path)
    assert not torch.equal(a.images, c.images)


def test_dataset_items_for_a_dataloader(tmp_path):
    ds = ShapesDataset(64, 16, seed=2, cache_dir=tmp_path)
    img, cap = ds[5]
    assert img.shape == (3, 16, 16) and 0 <= img.min() and img.max() <= 1 and isinstance(cap, str)
    assert len(ds.scene(5).objects) >= 1
    imgs, caps = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert imgs.shape == (8, 3, 16, 16) and len(caps) == 8


def test_dataset_defaults_come_from_the_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDALLE_PRESET", "ci")
    ds = ShapesDataset(cache_dir=tmp_path)
    assert len(ds) == 256 and ds[0][0].shape[-1] == 16
