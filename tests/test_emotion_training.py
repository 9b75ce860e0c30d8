"""The emotion recipe's arithmetic: speaker folds and splits, the corpora's labels, training crops, calibration
fitting (no torch needed); the speaker adversary; the network's two members and their folding into the reference
forward pass (with torch)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.emotion_features import N_INPUTS, ROW, WINDOW_FRAMES
from edge_agent.emotion_model import calibrate
from models.emotion.calibrate import MAX_ABSTAIN, abstain_threshold, ece, fit_temperature
from models.emotion.crossval import FOLDS
from models.emotion.dataset import corpus_clips, emodb_clips
from models.emotion.train import EMODB_TEST_SPEAKERS, TEST_SPEAKERS, crops, split_speakers, train_net, uar
from tests.conftest import shared_or_skip


def test_folds_hold_every_actor_out_exactly_once() -> None:
    actors = [a for fold in FOLDS for a in fold]
    assert sorted(actors) == [f"ravdess_{a:02d}" for a in range(1, 21)]  # disjoint and complete
    assert FOLDS[0] == TEST_SPEAKERS  # the shipped split is one of them
    for fold in FOLDS[1:]:
        numbers = [int(a.split("_")[1]) for a in fold]
        assert sum(n % 2 for n in numbers) == 2  # RAVDESS: odd actors are men


def test_crops_tile_short_clips_and_stay_inside_long_ones() -> None:
    rng = np.random.default_rng(0)
    short = np.arange(30 * ROW, dtype=np.float32).reshape(30, ROW)
    long = np.arange(500 * ROW, dtype=np.float32).reshape(500, ROW)
    x = crops([short, long], rng)
    assert x.shape == (2, WINDOW_FRAMES, N_INPUTS)
    y = crops([long], rng, length=120)
    assert y.shape == (1, 120, N_INPUTS)


def test_uar_weights_every_class_alike() -> None:
    y = np.array([0, 0, 0, 0, 1, 2, 3])
    pred = np.array([0, 0, 0, 0, 0, 2, 3])  # 6 of 7 right, but one class never found
    score, recall, cm = uar(y, pred)
    assert recall == [1.0, 0.0, 1.0, 1.0] and score == 0.75 and cm[1][0] == 1


def test_gradient_reversal_passes_values_and_turns_gradients_around() -> None:
    torch = pytest.importorskip("torch")  # the training extra; the station and CI run without it
    from models.emotion.net import gradient_reversal

    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = gradient_reversal(x, 0.5)
    assert torch.equal(y.detach(), x.detach())
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.5, -1.0, -1.5]))


def test_the_speaker_adversary_needs_each_rows_speaker() -> None:
    mels = [np.zeros((WINDOW_FRAMES, ROW), np.float32)] * 4
    with pytest.raises(ValueError, match="speaker"):
        train_net(mels, np.arange(4), None, 1, 0, adversary=0.5)


@pytest.mark.parametrize("member", ["temporal", "spectral"])
def test_each_member_folds_into_the_reference_forward_pass(member: str) -> None:
    """The trained network (batch norm live), its folded weights in numpy, and the module ONNX exports agree."""
    torch = pytest.importorskip("torch")
    from models.emotion.net import build, folded_module, folded_weights
    from models.emotion.reference import forward, members

    torch.manual_seed(0)
    net = build(7, member=member)
    x = torch.randn(32, WINDOW_FRAMES, N_INPUTS)
    net.train()
    net(x * 2.0 + 0.5)  # batch norm statistics that differ from the initial ones, so folding is exercised
    net.eval()
    w = folded_weights(net, 4)  # auxiliary outputs dropped
    assert members(w) == (["spec_"] if member == "spectral" else [""])
    with torch.no_grad():
        trained = torch.softmax(net(x)[:, :4], dim=1).numpy()
        exported = folded_module(w)(x).numpy()
    np.testing.assert_allclose(forward(w, x.numpy()), trained, atol=1e-5)
    np.testing.assert_allclose(exported, trained, atol=1e-5)


def test_the_members_average_their_log_probabilities() -> None:
    torch = pytest.importorskip("torch")
    from models.emotion.net import build, folded_weights
    from models.emotion.reference import forward

    torch.manual_seed(1)
    w_t, w_s = (folded_weights(build(4, member=m).eval()) for m in ("temporal", "spectral"))
    x = np.random.default_rng(0).normal(size=(5, WINDOW_FRAMES, N_INPUTS)).astype(np.float32)
    both = forward({**w_t, **w_s}, x)
    geo = np.sqrt(forward(w_t, x) * forward(w_s, x))  # the geometric mean, renormalised
    np.testing.assert_allclose(both, geo / geo.sum(axis=1, keepdims=True), atol=1e-5)
    with pytest.raises(ValueError, match="unknown member"):
        build(4, member="recurrent")


def test_emodb_labels_map_to_the_four_classes_and_the_auxiliaries() -> None:
    """Berlin EmoDB's labels: fear and disgust train the auxiliary outputs, boredom is left out."""
    root = shared_or_skip() / "data" / "emodb"
    clips = emodb_clips(root)
    labels = {c.label for c in clips}
    assert labels == {"neutral", "happy", "angry", "sad", "fearful", "disgust"}
    assert {c.corpus for c in clips} == {"emodb"} and len({c.speaker for c in clips}) == 10
    assert len(clips) == 535 - 81  # all but the 81 boredom clips
    assert {c.label for c in emodb_clips(root, aux=False)} == {"neutral", "happy", "angry", "sad"}


def test_validation_speakers_are_drawn_per_corpus_and_never_tested() -> None:
    root = shared_or_skip() / "data"
    clips = corpus_clips("ravdess", root / "ravdess") + corpus_clips("emodb", root / "emodb")
    test = [*TEST_SPEAKERS, *EMODB_TEST_SPEAKERS]
    train, val = split_speakers(clips, test, 20261123)
    assert not (set(train) | set(val)) & set(test) and not set(train) & set(val)
    assert sum(s.startswith("ravdess") for s in val) == 3 and sum(s.startswith("emodb") for s in val) == 2
    # a corpus's split does not depend on which other corpora train beside it
    alone = split_speakers([c for c in clips if c.corpus == "ravdess"], test, 20261123)
    assert alone[1] == [s for s in val if s.startswith("ravdess")]


def test_temperature_and_threshold_fitting() -> None:
    """A model twice as sure as it should be gets a temperature near 2; the threshold abstains on at most 25 %."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4000, 4)) * 1.5
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=p) for p in truth])
    sharp = np.exp(2 * logits) / np.exp(2 * logits).sum(axis=1, keepdims=True)
    t = fit_temperature(sharp.astype(np.float32), y)
    assert 1.8 < t < 2.2
    cal = calibrate(sharp.astype(np.float32), t)
    assert ece(cal, y) < ece(sharp.astype(np.float32), y)
    thr = abstain_threshold(cal)
    assert 0.2 <= float(np.mean(cal.max(axis=1) < thr)) <= MAX_ABSTAIN
