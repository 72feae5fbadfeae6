"""The run's recipe as the report states it: what its network, training and data were, read from the
run's config alone, and where that differs from the original lab's.

Nothing here assumes the lab's settings: a sentence about pooling, the optimiser or augmentation
is chosen by the value the run used, and the formulas of the principles section are written for it.
"""

from __future__ import annotations

from labbook.config import IMAGE_SIZE, TRAIN_IMAGES, Config
from labbook.localization import N_
from labbook.report.analysis import Fact

# The original lab's recipe: labbook's defaults, which the seed preset keeps.
LAB = Config()
LAB_SOURCE = "rule:original_lab."    # + the setting's key

# torch.optim.lr_scheduler.OneCycleLR as train.py builds it (its defaults): the rate starts at the
# peak / 25, rises over the first 30% of the steps, then falls along a cosine to the start / 10^4;
# it cycles the momentum (SGD) or beta1 (Adam, AdamW) between 0.95 and 0.85, against the rate.
ONECYCLE_WARMUP, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4
ONECYCLE_MOMENTUM = (0.85, 0.95)
ADAM_BETAS = (0.9, 0.999)   # torch.optim.Adam's and AdamW's defaults; train.py keeps them

# The settings that make up a recipe, each with how a reader names it; in the order the report lists
# them. (record_every, the seed and the runtime change what is logged or which draw, not the recipe.)
RECIPE = (("data.train_limit", N_("Training images")), ("data.validation_limit", N_("Validation images")),
          ("data.test_limit", N_("Test images")), ("data.augment_shift", N_("Random shift in training")),
          ("model.depth", N_("Channels of conv1 and conv2")), ("model.hidden", N_("Units of fc1")),
          ("model.dropout", N_("Dropout probability")), ("model.pooling", N_("Pooling")),
          ("train.epochs", N_("Epochs")), ("train.batch_size", N_("Batch size")),
          ("train.optimizer", N_("Optimiser")), ("train.learning_rate", N_("Learning rate")),
          ("train.momentum", N_("Momentum")), ("train.weight_decay", N_("Weight decay")),
          ("train.schedule", N_("Learning rate schedule")))


def _value(config: Config, key: str):
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def differences(config: Config) -> list[dict]:
    """Each recipe setting where the run differs from the original lab, with both values. Momentum
    counts only where both use SGD with a constant rate: otherwise the run has none, or the
    schedule sets it."""
    rows = []
    for key, label in RECIPE:
        run, lab = _value(config, key), _value(LAB, key)
        if key == "train.momentum" and (config.train.optimizer != "sgd" or config.train.schedule != "constant"):
            continue
        if run != lab:
            rows.append({"key": key, "label": label, "run": Fact(run, f"config.toml:{key}"), "lab": Fact(lab, LAB_SOURCE + key)})
    return rows


def recipe_facts(config: Config, data: dict) -> dict:
    """What the process and principles sections say about the recipe, each number with its source.
    `data`: run.json's image counts (what the run actually used, limits applied)."""
    train, model = config.train, config.model
    pooled, differing = IMAGE_SIZE // 4, differences(config)
    facts = {
        "differences": differing,
        "same_as_lab": not differing,
        "pooling": model.pooling,
        "optimizer": train.optimizer,
        "onecycle": train.schedule == "onecycle",
        "decoupled": train.optimizer == "adamw",
        "weight_decay": train.weight_decay > 0,
        "dropout": model.dropout > 0,
        "augmented": config.data.augment_shift > 0,
        "all_training_images": data["train"] == TRAIN_IMAGES,
        "image": Fact(IMAGE_SIZE, "rule:image_size"),
        "half": Fact(IMAGE_SIZE // 2, "rule:image_size/2"),
        "pooled": Fact(pooled, "rule:image_size/4"),
        "fc1_inputs": Fact(pooled * pooled * model.depth[1], "rule:(image_size/4)^2*config.toml:model.depth.1"),
        "betas": [Fact(beta, f"rule:adam_betas.{i}") for i, beta in enumerate(ADAM_BETAS)],
    }
    if facts["onecycle"]:
        start = train.learning_rate / ONECYCLE_DIV
        facts.update({
            "warmup": Fact(ONECYCLE_WARMUP, "rule:onecycle_warmup"),
            "start_rate": Fact(start, "rule:config.toml:train.learning_rate/25"),
            "final_rate": Fact(start / ONECYCLE_FINAL_DIV, "rule:config.toml:train.learning_rate/25/1e4"),
            "cycled": [Fact(value, f"rule:onecycle_momentum.{i}") for i, value in enumerate(ONECYCLE_MOMENTUM)],
        })
    return facts
