"""The sentences under the app's charts and metrics (ui/texts.py), on hand-made records, and the words of the
app's spinners."""

from streamlit.runtime.caching.cache_utils import CachedFunc

from ui import session
from ui.texts import (
    anchors_help,
    app_wording,
    change_after,
    counted,
    frontier_caption,
    held_out_note,
    loss_caption,
)


def test_counts_take_the_noun_in_the_right_number():
    assert counted(1, "model") == "1 model" and counted(0, "model") == "0 models"
    assert counted(16, "epoch") == "16 epochs"


def test_the_loss_caption_names_every_term_with_the_runs_weights_and_explains_a_rising_reconstruction():
    behaviour_only = loss_caption(0.05, 0.0, 1.0, True)
    assert "Total = 0.05 x contrastive + 0.95 x 0 x reconstruction + 1 x behavioural" in behaviour_only
    assert "Behavioural: how far the decoded models' outputs are" in behaviour_only
    assert "logged, not minimised, so it may rise" in behaviour_only
    structure_only = loss_caption(0.1, 1.0, 0.0, False)
    assert "plain (not layer-normalised)" in structure_only and "may rise" not in structure_only
    assert "no behavioural loss" in structure_only
    both = loss_caption(0.05, 1.0, 1.0, True)
    assert "may rise" not in both and "no behavioural loss" not in both


def test_the_frontier_caption_says_it_is_the_upper_envelope_and_which_scales_it_lifts():
    frontier = [  # scale 0.4 lands at a higher overlap than 0.2 with a lower accuracy: the envelope lifts it
        {"scale": 0.2, "acc_mean": 0.93, "max_iou_median": 0.5},
        {"scale": 0.4, "acc_mean": 0.446, "max_iou_median": 0.61},
        {"scale": 0.05, "acc_mean": 0.95, "max_iou_median": 0.8},
    ]
    caption = frontier_caption(frontier)
    assert "upper envelope of anchor + noise at 3 noise scales" in caption
    assert "Noise at scale 0.4 did worse than a smaller scale that is at least as new (a lower overlap)" in caption
    monotone = [
        {"scale": 0.2, "acc_mean": 0.7, "max_iou_median": 0.3},
        {"scale": 0.05, "acc_mean": 0.9, "max_iou_median": 0.8},
    ]
    assert "upper envelope" in frontier_caption(monotone) and "did worse" not in frontier_caption(monotone)
    assert frontier_caption([]) == ""


def test_the_anchors_metric_says_which_anchors_it_averages():
    source = anchors_help({"source_ratio": {"acc": 1.02}}, 576)
    assert "source anchors, one per generated model" in source and "not all 576 anchors" in source
    old = anchors_help({}, 576)
    assert "random subset of the 576 anchors" in old and "not their mean" in old


def test_a_run_not_fine_tuned_shows_no_change_and_one_epoch_is_singular():
    assert change_after(0.9, 0.9, 0) is None
    assert change_after(0.5, 0.8, 1) == "+30.0 points after 1 epoch"
    assert change_after(0.8, 0.75, 3) == "-5.0 points after 3 epochs"


def test_the_evaluation_says_how_many_models_were_held_out_and_warns_when_too_few():
    text, warning = held_out_note({"test_models": 2, "test_checkpoints": 10})
    assert text == "On 2 held-out models (10 checkpoints)." and "Only 2 models held out" in warning
    text, warning = held_out_note({"test_models": 38, "test_checkpoints": 190})
    assert text == "On 38 held-out models (190 checkpoints)." and warning is None
    assert held_out_note({})[1] is None


def test_engine_messages_use_the_apps_words_for_resuming():
    message = "stopped after epoch 3; run the same command again to resume"
    assert app_wording(message) == "stopped after epoch 3; start it again with the same settings to resume"


def test_no_cached_loader_spins_with_its_function_name():
    # Streamlit's default spinner text is the call itself: the sidebar showed `_zoo_errors_started(...)`
    loaders = {name: f for name, f in vars(session).items() if isinstance(f, CachedFunc)}
    assert "_zoo_errors_started" in loaders and len(loaders) >= 6
    assert all(f._info.show_spinner is False or isinstance(f._info.show_spinner, str) for f in loaders.values())
