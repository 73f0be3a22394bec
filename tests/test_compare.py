"""Which experiments momentum-sweep-compare joins, and how it says why it leaves one out."""

from momentum_sweep.analysis import compare


def test_an_experiment_with_other_settings_is_left_out_with_its_values_as_written():
    """dvc.api.exp_show gives integer params as floats (3.0); the reason gives them as
    params.yaml holds them."""
    common = {"Experiment": "e", "momentum": 0.4, "train.lr": 0.1, "train.batch_size": 20.0,
              "model.hidden": [50, 50]}
    reference = compare.signature({**common, "train.epochs": 10.0})
    assert reference["train.epochs"] == "10" and reference["train.batch_size"] == "20"
    assert compare.different_settings({**common, "train.epochs": 10.0}, reference) == ""
    assert compare.different_settings({**common, "momentum": 0.9, "train.epochs": 10.0},
                                      reference) == ""  # momentum is what a sweep varies
    assert compare.different_settings({**common, "train.epochs": 3.0}, reference) == (
        "different settings: train.epochs=3 (most have 10)")
