import json

import pytest
import torch

from minidalle.checkpoint import CheckpointError, load, load_into, load_or_train, record, save


def small():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def test_round_trip_with_optimizer_state(tmp_path):
    model = small()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    path = save(tmp_path / "m", {"model": model.state_dict(), "opt": opt.state_dict(), "step": 7}, {"width": 4})
    state, config, _ = load(path, {"width": 4})
    assert config == {"width": 4} and state["step"] == 7
    opt2 = torch.optim.AdamW(small().parameters(), lr=1e-3)
    opt2.load_state_dict(state["opt"])                     # int keys and param groups survive
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    m2 = small()
    for p in m2.parameters():
        p.data.zero_()
    load_into(m2, tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(m2.state_dict().values(), model.state_dict().values()))


def test_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .* train one first"):
        load(tmp_path / "nothing")


def test_corrupted_file_is_detected(tmp_path):
    path = save(tmp_path / "m", {"model": small().state_dict()}, {})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load(path)
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load(path)


def test_config_mismatch_names_the_difference(tmp_path):
    save(tmp_path / "m", {"model": small().state_dict()}, {"width": 4, "depth": 2})
    with pytest.raises(CheckpointError, match="width: checkpoint 4, wanted 8"):
        load(tmp_path / "m", {"width": 8, "depth": 2})


def test_weights_of_another_shape_are_refused_clearly(tmp_path):
    save(tmp_path / "m", {"model": small().state_dict()}, {})
    other = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    with pytest.raises(CheckpointError, match="do not fit this Sequential"):
        load_into(other, tmp_path / "m")


def test_load_or_train_trains_once_then_loads(tmp_path):
    calls = []

    def train(m):
        calls.append(1)
        with torch.no_grad():
            m[0].weight.fill_(0.5)
        return {"loss": 0.1}

    info, loaded = load_or_train(small(), tmp_path / "m", {"w": 1}, train)
    assert not loaded and info == {"loss": 0.1}
    m = small()
    info, loaded = load_or_train(m, tmp_path / "m", {"w": 1}, train)
    assert loaded and len(calls) == 1 and torch.all(m[0].weight == 0.5)
    _, loaded = load_or_train(small(), tmp_path / "m", {"w": 2}, train)     # other config: retrain
    assert not loaded and len(calls) == 2



def test_load_or_train_records_what_it_was_trained_on(tmp_path):
    """A notebook-trained prior (no shipped checkpoint, e.g. at gpu) must load later through the family's `load`,
    which checks `trained_on`; and a notebook must not load one trained on another CLIP."""
    on = {"clip": "aaaa"}
    load_or_train(small(), tmp_path / "m", {"w": 1}, lambda m: {}, trained_on=on)
    load_into(small(), tmp_path / "m", {"w": 1}, trained_on=on)                  # the family's check passes
    with pytest.raises(CheckpointError):
        load_into(small(), tmp_path / "m", {"w": 1}, trained_on={"clip": "bbbb"})
    _, loaded = load_or_train(small(), tmp_path / "m", {"w": 1}, lambda m: {}, trained_on={"clip": "bbbb"})
    assert not loaded                                                              # another CLIP: retrained

def test_manifest_records_command_and_hash(tmp_path):
    path = save(tmp_path / "ck" / "m", {"model": small().state_dict()}, {})
    manifest = tmp_path / "ck" / "manifest.json"
    entry = record("m", path, "python -m minidalle train x", "cpu", 0, 12.34, {"acc": 0.9}, manifest)
    data = json.loads(manifest.read_text())
    assert data["m"] == entry and entry["file"] == "m.safetensors" and len(entry["sha256"]) == 64


def test_training_state_lives_under_runs_next_to_its_checkpoint_name():
    from minidalle import checkpoint
    from minidalle.clip.train import checkpoint_name

    assert checkpoint.state_path(checkpoint.SHIPPED / "glide-cpu") == checkpoint.ROOT / "runs" / "glide-cpu-state"
    assert checkpoint.state_path(checkpoint_name("cpu")) == checkpoint.ROOT / "runs" / "clip-cpu-state"


def test_manifest_command_line_names_the_thread_count_only_when_set(monkeypatch):
    from minidalle.checkpoint import command_line

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert command_line("cpu", "train glide") == "OMP_NUM_THREADS=1 MINIDALLE_PRESET=cpu python -m minidalle train glide"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert command_line("gpu", "train clip") == "MINIDALLE_PRESET=gpu python -m minidalle train clip"


def test_fingerprint_names_a_checkpoint_and_changes_with_it(tmp_path):
    from minidalle.checkpoint import fingerprint

    assert fingerprint(tmp_path / "none") == ""
    save(tmp_path / "a", {"w": torch.zeros(3)})
    first = fingerprint(tmp_path / "a")
    assert len(first) == 16 and first == fingerprint(tmp_path / "a.safetensors")
    save(tmp_path / "a", {"w": torch.ones(3)})                          # retrained: a model built on it must notice
    assert fingerprint(tmp_path / "a") != first
