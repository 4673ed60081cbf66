"""The package's house rules (book/design.md): imports run one way, one frozen config per preset, --set overrides
that refuse bad keys and values, one registry, one training loop whose resume really resumes, one clear error."""
import ast
import dataclasses
import importlib
import re
from pathlib import Path

import pytest
import torch

from minidalle import checkpoint, cli, config as cfg, registry
from minidalle.cli import main
from minidalle.config import InputError, override
from minidalle.diffusion import ddpm, glide
from minidalle.eval import diffusion as eval_diffusion
from minidalle.trainer import TrainConfig, fit
from minidalle.world.captions import parse

PACKAGE = Path(__file__).resolve().parent.parent / "minidalle"
LAYERS = [  # a module may import from its own layer (not a sibling family) or from layers above it, never below
    ("config", "runtime", "checkpoint", "trainer"), ("world",), ("text",), ("nn",), ("clip",), ("diffusion",),
    ("dalle2", "dalle1"), ("eval",), ("registry",), ("cli", "__main__"),
]


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, top_level_only: bool = True) -> list[tuple[str, int]]:
    """(imported minidalle module, line) of a file; module-level imports only unless asked."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("minidalle"):
            out += [(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules() else node.module, node.lineno)
                    for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("minidalle")]
    return out


def layer(module: str) -> tuple[int, str]:
    part = module.split(".")[1] if module.count(".") else ""
    for i, names in enumerate(LAYERS):
        if part in names:
            return i, part
    return 0, ""                                               # the package itself: the base layer


def test_every_module_imports():
    for name in modules():
        if name != "minidalle.__main__":                       # that one runs the command line
            importlib.import_module(name)


def test_imports_run_one_way_and_have_no_circles():
    wrong = []
    for name, path in modules().items():
        here, family = layer(name)
        for target, line in imports(path):
            there, other = layer(target)
            if there > here or (there == here and other != family and here == LAYERS.index(("dalle2", "dalle1"))):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not wrong, "imports against the layers of book/design.md:\n" + "\n".join(wrong)
    graph = {name: {t for t, _ in imports(path) if t != name} for name, path in modules().items()}
    seen, stack = set(), []

    def visit(node):
        if node in stack:
            raise AssertionError("import circle: " + " → ".join(stack[stack.index(node):] + [node]))
        if node in seen:
            return
        stack.append(node)
        for nxt in graph.get(node, ()):
            visit(nxt)
        stack.pop()
        seen.add(node)
    for name in graph:
        visit(name)


def test_imports_inside_functions_say_why():
    silent = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        top = {ln for _, ln in imports(path)}
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno not in top and node.col_offset > 0:
                if "#" not in lines[node.lineno - 1]:
                    silent.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not silent, "imports inside functions without a reason written next to them: " + ", ".join(silent)


def test_modules_name_their_lesson_and_never_cite_files_outside_the_repository():
    for name, path in modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert doc, f"{name} has no docstring"
        assert "COURSE.md" not in path.read_text(), name


@pytest.mark.parametrize("kind", registry.TRAINABLE)
def test_one_frozen_config_per_preset_defaults_are_cpu(kind):
    k = registry.KINDS[kind]
    presets = {p: k.config(p) for p in ("ci", "cpu", "gpu")}
    cpu = presets["cpu"]
    assert type(cpu)() == cpu, f"{kind}: the class defaults are not the cpu preset"
    for p, c in presets.items():
        assert dataclasses.is_dataclass(c) and type(c).__dataclass_params__.frozen, (kind, p)
        assert isinstance(c.train, TrainConfig), (kind, p)
        with pytest.raises(dataclasses.FrozenInstanceError):
            c.train.steps = 1
        for f in dataclasses.fields(c):
            v = getattr(c, f.name)
            assert not isinstance(v, (list, dict)), f"{kind}.{f.name} must be immutable"
            if dataclasses.is_dataclass(v):
                assert type(v).__dataclass_params__.frozen, f"{kind}.{f.name}"
    assert presets["ci"].train.steps < cpu.train.steps


def test_override_changes_nested_settings_and_refuses_bad_ones():
    c = ddpm.ddpm_config("ci")
    new, applied = override(c, ["train.steps=1_000", "unet.mults=1,2,2", "diffusion.clip_x0=false", "train.lr=3e-4"])
    assert applied == {"train.steps": 1000, "unet.mults": (1, 2, 2), "diffusion.clip_x0": False, "train.lr": 3e-4}
    assert new.train.steps == 1000 and new.unet.mults == (1, 2, 2) and not new.diffusion.clip_x0
    assert c.train.steps == 10                                   # the preset itself is untouched
    with pytest.raises(InputError, match=r"unknown setting 'train.stepz'.*did you mean train.steps"):
        override(c, ["train.stepz=3"])
    with pytest.raises(InputError, match="train.steps must be a whole number"):
        override(c, ["train.steps=many"])
    with pytest.raises(InputError, match="true or false"):
        override(c, ["diffusion.clip_x0=maybe"])
    with pytest.raises(InputError, match="key=value"):
        override(c, ["train.steps"])
    with pytest.raises(ValueError, match="cannot be halved"):  # the config's own check still runs
        override(c, ["unet.res=15"])


@pytest.mark.parametrize("argv,match", [
    (["train", "glide", "--set", "train.stepz=3"], "unknown setting 'train.stepz'"),
    (["train", "glide", "--set", "train.steps=abc"], "train.steps must be a whole number"),
    (["train", "glide", "--set", "steps"], "--set takes key=value"),
    (["generate", "a blue square above a green star"], "unknown word 'star'"),
    (["generate", "a red circle", "--n", "0"], "--n must be between 1 and 64"),
    (["generate", "a red circle", "--out", "/no/such/folder/x.png"], "there is no folder"),
    (["oracle", "read", "/no/such/image.png"], "cannot read image"),
])
def test_bad_input_is_one_clear_line(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and len(err.splitlines()) == 1, err


def test_the_cli_s_example_prompts_parse():
    generate = cli.parser()._subparsers._group_actions[0].choices["generate"]
    text = cli.__doc__ + " ".join(a.help or "" for a in generate._actions)
    examples = [p for p in re.findall(r"'([^']+)'", text) if p.startswith(("a ", "an "))]
    assert len(examples) >= 2
    for p in examples:
        parse(p)


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only the course's own input errors become one line; any other ValueError is a bug and is raised."""
    def broken(*args, **kwargs):
        raise ValueError("a bug")
    monkeypatch.setattr(registry, "train", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["train", "ddpm"])


def test_registry_trains_with_overrides_and_records_them(tmp_path):
    sets = ["train.steps=3", "train.log_every=1", "unet.channels=8"]
    model, info = registry.train("ddpm", "ci", sets=sets, out=tmp_path / "d", show_progress=False)
    assert info["steps"] == 3 and len(info["losses"]) == 3
    _, stored, _ = checkpoint.load(tmp_path / "d")
    assert stored["train"]["steps"] == 3 and stored["unet"]["channels"] == 8
    assert checkpoint.recorded_overrides(tmp_path / "d") == {"train.steps": 3, "train.log_every": 1, "unet.channels": 8}
    again = checkpoint.load_model(ddpm.DDPM, ddpm.ddpm_config("ci"), tmp_path / "d")   # rebuilt as it was trained
    assert again.config.unet.channels == 8
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    assert not list(cfg.ROOT.joinpath("runs").glob("d-state*"))   # the state went beside the checkpoint
    assert (tmp_path / "d-state.safetensors").exists()
    with pytest.raises(InputError, match="unknown model kind"):
        registry.train("ddmp", "ci")


def test_checkpoints_check_model_settings_and_what_they_were_trained_on(tmp_path):
    c = ddpm.ddpm_config("ci")
    checkpoint.save(tmp_path / "m", {"model": ddpm.DDPM(c).state_dict()}, c, trained_on={"clip": "abc"})
    longer, _ = override(c, ["train.steps=500"])                 # training settings: provenance only
    checkpoint.load_into(ddpm.DDPM(longer), tmp_path / "m", longer)
    wider, _ = override(c, ["unet.channels=32"])
    with pytest.raises(checkpoint.CheckpointError, match="unet.channels"):
        checkpoint.load_into(ddpm.DDPM(wider), tmp_path / "m", wider)
    with pytest.raises(checkpoint.CheckpointError, match="another clip"):
        checkpoint.load_into(ddpm.DDPM(c), tmp_path / "m", c, trained_on={"clip": "def"})


def _tiny_fit(tmp_path, name, steps=6, on_log=None, resume=False, model=None):
    torch.manual_seed(0)
    model = model or torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    tc = TrainConfig(steps=steps, batch=8, warmup=1, log_every=1, save_every=2, ema=0.9)
    target = torch.randn(64, 1, generator=torch.Generator().manual_seed(1))
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(2))

    def batch_loss(step, gen):
        idx = torch.randint(0, 64, (8,), generator=gen)
        return ((model(x[idx]) - target[idx]) ** 2).mean(), {}
    info = fit(model, {"tiny": 1}, tc, batch_loss, name=tmp_path / name, resume=resume, show_progress=False,
               on_log=on_log)
    return model, info


def test_resume_after_ctrl_c_ends_with_the_weights_of_an_unbroken_run(tmp_path):
    whole, info = _tiny_fit(tmp_path, "a")

    def stop(step, _):
        if step == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        _tiny_fit(tmp_path, "b", on_log=stop)
    state, _, _ = checkpoint.load(checkpoint.state_path(tmp_path / "b"))
    assert int(state["step"]) == 4                               # the snapshot Ctrl-C wrote
    resumed, again = _tiny_fit(tmp_path, "b", resume=True)
    assert [x[1] for x in again["losses"]] == pytest.approx([x[1] for x in info["losses"]], abs=1e-6)
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    fresh, _ = _tiny_fit(tmp_path, "c", steps=2)                 # and a run that stopped early differs
    assert any(not torch.allclose(a, b) for a, b in zip(whole.state_dict().values(), fresh.state_dict().values()))


def test_state_of_a_named_run_stays_beside_it(tmp_path):
    assert checkpoint.state_path(tmp_path / "v") == tmp_path / "v-state"
    assert checkpoint.state_path(checkpoint.shipped_name("glide", "cpu")) == checkpoint.RUNS / "glide-cpu-state"


def test_bar_watch_times_the_bar_and_stops_there_when_asked(tmp_path, monkeypatch, capsys):
    """`train KIND --bar-every N` and benchmarks/time_to_bar.py: the kind's metrics every N steps, the first at the bar."""
    kind = registry.KINDS["ddpm"]
    tiny = ["train.steps=6", "train.log_every=1", "train.n_train=64"]
    monkeypatch.setattr(eval_diffusion, "one_clean_object", lambda images: [True, False, False, False] * 32)  # 0.25

    def bar(at_least):
        monkeypatch.setitem(registry.KINDS, "ddpm", dataclasses.replace(kind, bar=dataclasses.replace(
            kind.bar, at_least=at_least)))
    bar(0.2)
    registry.train("ddpm", "ci", sets=tiny, out=tmp_path / "d", show_progress=False, bar_every=2)
    out = capsys.readouterr().out
    assert out.count("one_clean_object_ddim50 0.250") == 3 and out.count("at the bar") == 1   # steps 2, 4, 6
    watch = registry.BarWatch("ddpm", every=2, stop=True)
    with pytest.raises(registry.BarReached):
        ddpm.train(registry.build("ddpm", "ci", tiny), tmp_path / "s", show_progress=False, on_log=watch)
    assert [c[0] for c in watch.checks] == [2] and watch.reached == watch.checks[0] and watch.reached[2] == 0.25
    bar(0.5)
    watch = registry.BarWatch("ddpm", every=4)
    ddpm.train(registry.build("ddpm", "ci", tiny), tmp_path / "n", show_progress=False, on_log=watch)
    assert [c[0] for c in watch.checks] == [4] and watch.reached is None        # step 4 (the next would be 8)
    assert watch.summary()["reached"] is None and watch.summary()["checks"][0][0] == 4
    with pytest.raises(InputError, match="no bar"):
        registry.BarWatch("clip")
    with pytest.raises(InputError, match="cannot be combined with --resume"):
        registry.train("ddpm", "ci", sets=tiny, out=tmp_path / "r", resume=True, bar_every=2)


def test_an_old_shipped_checkpoint_is_refused_with_the_command_that_makes_the_new_one(tmp_path, monkeypatch):
    """A GLIDE of other model settings (as the 16×16 ones will be once the base models move to 32×32), found where
    the shipped ones live: the message names the setting and the command that makes the current one."""
    monkeypatch.setattr(checkpoint, "SHIPPED", tmp_path)
    old, _ = override(glide.glide_config("cpu"), ["unet.res=32"])
    checkpoint.save(tmp_path / "glide-cpu", {"model": glide.GLIDE(old).state_dict()}, old)
    with pytest.raises(checkpoint.CheckpointError, match=r"unet.res: checkpoint 32, wanted 16.*"
                                                         r"`MINIDALLE_PRESET=cpu python -m minidalle train glide`"):
        checkpoint.load_model(glide.GLIDE, glide.glide_config("cpu"), tmp_path / "glide-cpu", kind="glide")
