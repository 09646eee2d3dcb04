"""The examples in examples/ run end to end at a tiny size (each is one command, listed in the README)."""

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name, *argv):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(argv))


def test_the_vae_learns_with_its_kl_term_in_compute_loss(capsys):
    result = run("vae_digits", "--epochs", "3", "--samples", "600")
    assert math.isfinite(result["loss"]) and result["last_loss"] < result["first_loss"]
    assert "Evaluation loss (reconstruction + KL)" in capsys.readouterr().out


def test_the_gan_trains_two_optimizers_and_moves_its_samples_toward_the_ring():
    result = run("gan_2d", "--epochs", "3", "--samples", "1024")
    assert math.isfinite(result["d_loss"]) and math.isfinite(result["g_loss"])
    assert result["radius"] > 0.4  # an untrained generator's points sit about 0.14 from the centre


@pytest.mark.slow
def test_distillation_teaches_a_small_student():
    result = run("distillation_digits", "--epochs", "8", "--samples", "900")
    assert result["teacher accuracy"] > 0.5 and result["student accuracy"] > 0.3  # chance is 0.1


def test_forks_rollbacks_where_runs_part_and_seeds_work_from_python_on_the_digits(capsys):
    result = run("exact_resume_digits", "--epochs", "3", "--seeds", "2")
    assert result["identical"], "a fork with nothing changed repeats its parent bit for bit"
    [event] = result["fork"].events
    assert (event["kind"], event["epoch"], event["changes"]) == ("fork", 2, {"lr": [0.001, 0.0001]})
    assert {k: v[:2] for k, v in result["fork"].history.items()} == \
           {k: v[:2] for k, v in result["parent"].history.items()}, "the fork's History continues its parent's"
    parted = result["parted"]
    assert (parted.at, parted.batches, parted.inputs_differ, parted.module) == ((2, 0), 0, False, None)
    assert result["rollbacks"] and all(e["reason"] == "spike" and e["loss"] > e["threshold"] and not e["exhausted"]
                                       for e in result["rollbacks"])
    verdict = result["verdict"]
    assert (verdict.metric, verdict.estimate_a.n, verdict.estimate_b.n) == ("val_loss", 2, 2)
    out = capsys.readouterr().out
    assert "repeats the parent bit for bit: True" in out and str(verdict) in out
