"""The diffusion prior (lesson 05): shapes, the two-candidate rule, training, guidance, the shipped model."""
import pytest
import torch
from conftest import first_and_last

from minidalle import checkpoint
from minidalle.clip import load_trained as load_clip
from minidalle.prior import Prior, evaluate, keep_closest, null_caption, prior_config, sample, train
from minidalle.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def ci_clip():
    return load_clip("ci")[0].eval()


def test_forward_shapes_and_the_query_reads_the_caption():
    torch.manual_seed(0)
    c = prior_config("ci")
    model = Prior(c).eval()
    tok = Tokenizer(c.text_len)(["a red circle", "a blue square left of a green cross"])
    z, t, txt = torch.randn(2, c.embed_dim), torch.tensor([5, 50]), torch.randn(2, c.embed_dim)
    out = model(z, t, tok, txt)
    assert out.shape == (2, c.embed_dim)
    other = model(z, t, Tokenizer(c.text_len)(["a white diamond", "a red circle"]), txt)
    assert not torch.allclose(out, other)                                    # the caption tokens reach the query
    null_tok, null_txt = null_caption(c, 3)
    assert null_tok.shape == (3, c.text_len) and (null_txt == 0).all()


def test_keep_closest_picks_the_candidate_nearest_the_text():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cands = torch.tensor([[[0.0, 1.0], [0.8, 0.6]], [[0.6, 0.8], [1.0, 0.0]]])    # (B=2, k=2, D=2)
    assert torch.equal(keep_closest(cands, text), torch.tensor([[0.8, 0.6], [0.6, 0.8]]))


def test_training_lowers_the_loss_and_sampling_gives_unit_embeddings(tmp_path, ci_clip):
    torch.manual_seed(0)
    c = prior_config("ci")
    c.train.steps, c.train.n_train, c.train.log_every, c.train.lr = 60, 128, 1, 3e-3
    model = Prior(c)
    info = train(model, ci_clip, name=tmp_path / "p", show_progress=False)
    first, last = first_and_last(info)
    assert last < 0.7 * first, (first, last)
    checkpoint.load_into(Prior(c), tmp_path / "p", c)
    tok = Tokenizer(c.text_len)(["a red circle", "a blue square"])
    for guidance in (1.0, 3.0):
        z = sample(model, tok, torch.randn(2, c.embed_dim), guidance=guidance, steps=4)
        assert z.shape == (2, c.embed_dim) and torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_shipped_prior_beats_the_text_embedding():
    """data/checkpoints/prior-cpu: its samples are closer to the true image embedding than the caption's
    text embedding is (eval prior has the figures and the nearest-neighbour baseline); ≈ 15 s."""
    from minidalle.prior import load_trained

    model, clip_model = load_trained("cpu")
    r = evaluate(model, clip_model, n=100, nearest=False)
    assert r["prior"][0] > r["text embedding"][0] + 0.02, r
