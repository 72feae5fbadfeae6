import pytest
import torch
import torch.nn.functional as F
from lab_convnet import ConvNet as LabConvNet

from labbook.lab.model import ConvNet, dropout


def test_shapes_and_state_dict_names():
    model = ConvNet()
    assert list(model.state_dict()) == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert list(model.state_dict()) == list(LabConvNet().state_dict())
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    first, second = model.retrieve_features(x)
    assert first.shape == (3, 4, 28, 28) and second.shape == (3, 8, 14, 14)
    assert ConvNet(depth=(6, 16)).fc1.in_features == 7 * 7 * 16


def test_same_function_and_gradients_as_the_labs_class():
    torch.manual_seed(0)
    ours, lab = ConvNet().eval(), LabConvNet().eval()
    lab.load_state_dict(ours.state_dict())
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    assert torch.equal(ours(x), lab(x))
    for mine, theirs in zip(ours.retrieve_features(x), lab.retrieve_features(x)):
        assert torch.equal(mine, theirs)
    grads_ours = torch.autograd.grad(F.cross_entropy(ours(x), y), list(ours.parameters()))
    grads_lab = torch.autograd.grad(F.cross_entropy(lab(x), y), list(lab.parameters()))
    for mine, theirs in zip(grads_ours, grads_lab):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("p", [0.5, 0.25, 0.3])
def test_dropout_keeps_the_expected_share_and_scale(p):
    torch.manual_seed(0)
    x = torch.ones(200, 512)
    out = dropout(x, p, training=True)
    kept = (out != 0).float().mean().item()
    assert abs(kept - (1 - p)) < 0.01
    assert torch.allclose(out[out != 0], torch.tensor(1 / (1 - p)))
    assert torch.equal(dropout(x, p, training=False), x)


@pytest.mark.parametrize("pooling", ["max", "avg", "blur"])
def test_evaluation_is_the_models_function_whatever_the_batch(pooling):
    """Evaluation runs in oneDNN's blocked format where it can (max and average pooling on a CPU):
    the model's plain forward gives the same log-probabilities to float rounding, every batch size
    the same bits, and the model is left in the mode it was in."""
    from labbook.lab.evaluate import log_probabilities
    torch.manual_seed(0)
    model = ConvNet(pooling=pooling).train()
    x = torch.rand(300, 1, 28, 28)
    whole = log_probabilities(model, x, batch_size=300)
    assert model.training
    assert torch.equal(whole, log_probabilities(model, x, batch_size=64))
    with torch.no_grad():
        plain = ConvNet(pooling=pooling).eval()
        plain.load_state_dict(model.state_dict())
        torch.testing.assert_close(whole, plain(x), rtol=1e-5, atol=1e-5)
