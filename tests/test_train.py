import pytest
import torch

from labbook.config import load_config, parse_override
from labbook.lab.data import Mnist
from labbook.lab.evaluate import confusion_matrix
from labbook.lab.train import NonFiniteLoss, TrainState, train


def small(mnist, *overrides):
    config = load_config(overrides=[parse_override(item) for item in
                                    ("train.epochs=2", "train.record_every=5", *overrides)])
    data = Mnist(mnist.train.head(640), mnist.validation.head(200), mnist.test.head(200))
    return config, data


def test_same_seed_same_numbers(mnist):
    config, data = small(mnist)
    first = train(config, data, torch.device("cpu"))
    second = train(config, data, torch.device("cpu"))
    strip = lambda rows: [{k: v for k, v in row.items() if k != "elapsed_seconds"} for row in rows]  # noqa: E731
    assert strip(first.history) == strip(second.history)
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    other, _ = small(mnist, "train.seed=1")
    assert strip(train(other, data, torch.device("cpu")).history) != strip(first.history)


def test_records_at_the_labs_cadence(mnist):
    config, data = small(mnist)
    state = train(config, data, torch.device("cpu"))
    # 640 images / 64 = 10 batches per epoch; records after batches 0 and 5 of each epoch.
    assert [(row["epoch"], row["batch"]) for row in state.history] == [(0, 0), (0, 5), (1, 0), (1, 5)]
    assert [row["samples_seen"] for row in state.history] == [64, 384, 704, 1024]
    assert state.snapshots["conv1.weight"][0].shape == (4, 1, 5, 5)
    assert len(state.snapshots["conv2.bias"]) == 4
    # The running training accuracy restarts each epoch, as in the lab: at batch 0 it is over that
    # batch's 64 images, at batch 5 over the epoch's first 384, in every epoch.
    for row in state.history:
        seen = 64 * (row["batch"] + 1)
        correct = row["train_accuracy"] * seen
        assert abs(correct - round(correct)) < 1e-9 and 0 <= correct <= seen, row


def test_exploding_loss_stops_with_a_clear_message(mnist):
    config, data = small(mnist, "train.learning_rate=1e12")
    state = TrainState(model=None)
    with pytest.raises(NonFiniteLoss, match="training loss became (nan|inf).*learning_rate"):
        train(config, data, torch.device("cpu"), state)


def test_confusion_matrix_rows_are_true_digits():
    labels = torch.tensor([0, 0, 1, 9])
    predictions = torch.tensor([0, 1, 1, 3])
    matrix = confusion_matrix(labels, predictions)
    assert matrix[0][0] == 1 and matrix[0][1] == 1 and matrix[1][1] == 1 and matrix[9][3] == 1
    assert sum(map(sum, matrix)) == 4


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_training_never_loads_pytorchs_compiler(optimizer):
    """torch.optim's methods marked "do not compile" import torch._dynamo on first use (about 2 s of
    every training process); labbook compiles nothing and trains without it."""
    import subprocess
    import sys
    script = (
        "import sys, torch\n"
        "from labbook.config import load_config, parse_override\n"
        "from labbook.lab.data import Mnist, load_mnist\n"
        "from labbook.lab.train import train\n"
        f"config = load_config(overrides=[parse_override(o) for o in ('train.epochs=1', 'train.optimizer=\"{optimizer}\"')])\n"
        "mnist = load_mnist()\n"
        "train(config, Mnist(mnist.train.head(128), mnist.validation.head(64), mnist.test.head(64)), torch.device('cpu'))\n"
        "print('torch._dynamo' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("recipe", [("sgd", "constant"), ("adamw", "onecycle")])
def test_the_compiler_free_step_is_pytorchs_step(recipe):
    """labbook steps the optimizer without the wrapper that imports torch._dynamo: the parameters
    must be, bit for bit, those of optimizer.step(), and the scheduler must not warn."""
    import warnings

    from labbook.lab.model import build_model
    from labbook.lab.train import _optimizer, _step
    optimizer_name, schedule = recipe
    config = load_config(overrides=[parse_override(f'train.optimizer="{optimizer_name}"'),
                                    parse_override(f'train.schedule="{schedule}"')])
    outcomes = []
    for ours in (False, True):
        torch.manual_seed(0)
        model = build_model(config)
        optimizer, scheduler = _optimizer(config, model, steps=10)
        step = _step(optimizer) if ours else optimizer.step
        generator = torch.Generator().manual_seed(1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(5):
                images = torch.rand(8, 1, 28, 28, generator=generator)
                loss = torch.nn.functional.cross_entropy(model(images), torch.randint(0, 10, (8,), generator=generator))
                optimizer.zero_grad()
                loss.backward()
                step()
                if scheduler is not None:
                    scheduler.step()
        outcomes.append([parameter.detach().clone() for parameter in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*outcomes))
