"""The API: outputs per mode, query accounting, budget, pricing, history, defense hook."""

import pytest
import torch

from encsteal.api import BudgetExceeded, EncoderAPI
from encsteal.models import LinearClassifier, ProjectionHead, SmallConvNet


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    enc = SmallConvNet(1).eval()
    return enc, ProjectionHead(256, 64, 32).eval(), LinearClassifier(256, 10).eval()


def test_ssl_outputs(parts):
    enc, head, _ = parts
    x = torch.rand(5, 1, 28, 28)
    rep = EncoderAPI(enc).query(x)
    assert rep.shape == (5, 256) and torch.allclose(rep, enc(x), atol=1e-6)
    out = EncoderAPI(enc, head, output="head").query(x)
    assert out.shape == (5, 32) and torch.allclose(out, head(enc(x)), atol=1e-6)


def test_supervised_outputs(parts):
    enc, _, clf = parts
    x = torch.rand(6, 1, 28, 28)
    probs = clf(enc(x)).softmax(1)
    api = lambda o, **k: EncoderAPI(enc, clf, mode="supervised", output=o, **k)  # noqa: E731
    assert torch.equal(api("label").query(x)[:, 0].long(), probs.argmax(1))
    assert torch.allclose(api("probabilities").query(x), probs, atol=1e-6)
    top = api("topk", top_k=3).query(x)
    assert ((top > 0).sum(1) == 3).all() and torch.allclose(top.max(1).values, probs.max(1).values, atol=1e-6)
    assert api("logits").query(x).shape == (6, 10)


def test_accounting_budget_and_price(parts):
    enc, _, _ = parts
    api = EncoderAPI(enc, price_per_1k=2.0, budget=10)
    api.query(torch.rand(4, 1, 28, 28))
    api.query(torch.rand(3, 1, 28, 28), user="alice")
    assert api.queries() == 4 and api.queries("alice") == 3 and api.spent() == pytest.approx(0.008)
    with pytest.raises(BudgetExceeded, match="asked for 7 more queries but has 6"):
        api.query(torch.rand(7, 1, 28, 28))
    assert api.queries() == 4, "a refused call is neither answered nor counted"
    assert len(api.users["attacker"].past_embeddings()) == 4


def test_adapts_any_data_set_and_rejects_bad_shapes(parts):
    enc, _, _ = parts
    api = EncoderAPI(enc)
    assert api.query(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)).shape == (2, 256)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) with C = 1 or 3"):
        api.query(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        api.query(torch.rand(2, 2, 28, 28))


def test_defense_hook_sees_history(parts):
    enc, head, _ = parts
    seen = []

    def shift(outputs, context):
        seen.append((context.user, context.history.queries, context.embeddings.shape))
        return outputs + 1.0

    api = EncoderAPI(enc, head, defenses=[shift])
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(api.query(x), enc(x) + 1.0, atol=1e-6)
    api.query(x)
    assert seen == [("attacker", 0, (3, 32)), ("attacker", 3, (3, 32))]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "hybrid"}, "Allowed: ssl, supervised"),
        ({"output": "label"}, "Allowed: representation, head"),
        ({"budget": -1}, "budget must be >= 0"),
        ({"mode": "supervised", "output": "label"}, "needs the victim's head"),
    ],
)
def test_bad_api_settings(parts, kwargs, message):
    with pytest.raises(ValueError, match=message):
        EncoderAPI(parts[0], **kwargs)
