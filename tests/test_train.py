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
