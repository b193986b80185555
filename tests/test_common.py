"""scikit-learn's estimator checks on every public skmm estimator, in one place.

Estimators that take a 2-D numeric array run the full ``parametrize_with_checks``
suite: the audio encoders (each row read as a waveform), the fuser for every fusion,
the late-fusion ensembles for every voting rule, the nets and the matcher (two
numeric column groups through MLP towers). ImageEncoder and TextEncoder take no 2-D
array, so scikit-learn skips its checks for them; the input-independent checks run
one by one here and the rest are tested on images and texts in their own test files.
Expected failures are listed per instance, with their reason, in ``XFAIL``; none is
skipped silently, and an unexpected pass fails (``xfail_strict``).
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils import estimator_checks as ec
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmm.encoders import AudioEncoder, AudioFeatures, ImageEncoder, TextEncoder
from skmm.fusion import (
    FUSION_OPERATORS,
    LateFusionClassifier,
    LateFusionRegressor,
    MultimodalFuser,
)
from skmm.nn import (
    MultimodalMatcher,
    MultimodalNetClassifier,
    MultimodalNetRegressor,
    ZeroShotClassifier,
)

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    # The element-wise fusers here project each column group to one PCA component on
    # purpose (the checks' data has no classes to align them); the fuser's advice to
    # use an aligned projection is tested in test_fuser.py.
    pytest.mark.filterwarnings("ignore:fusion=.* combines coordinate k:UserWarning"),
]


# Tiny settings: waveforms of a few samples at 100 Hz, one short epoch, on the CPU.
TINY_AUDIO = dict(sample_rate=100, duration=0.2, n_fft=16, n_mels=4, device="cpu")


# Late fusion: two overlapping windows of columns, so that each model sees at least
# one column whatever the number of features the checks use, and a NaN cell never
# blanks a model's whole selection (a missing modality, not bad input). Module-level
# functions, so that the pickling checks can pickle them.
def head_columns(X):
    return slice(0, max(1, X.shape[1] - 1))


def tail_columns(X):
    return slice(min(1, X.shape[1] - 1), None)


def all_columns(X):
    return slice(0, X.shape[1])


def _encoders():
    yield AudioEncoder(**TINY_AUDIO, max_epochs=1, batch_size=8)
    yield AudioEncoder(**TINY_AUDIO, max_epochs=0)
    yield AudioFeatures(sample_rate=100, n_fft=16, n_mels=8, n_mfcc=4)


def _fusers():
    # Two column groups (even and odd columns), each standardised by its own encoder;
    # the element-wise fusions project each group to one component for one width.
    for fusion in sorted(FUSION_OPERATORS):
        yield MultimodalFuser(
            [
                ("even", StandardScaler(), slice(0, None, 2)),
                ("odd", StandardScaler(), slice(1, None, 2)),
            ],
            fusion=fusion,
            projection=None if fusion in ("concat", "tensor") else 1,
            weights={"even": 1.0, "odd": 2.0} if fusion == "weighted" else None,
        )


def _late_fusion():
    for voting in ["hard", "soft", "product", "max", "stacking"]:
        estimators = [
            ("a", GaussianNB(), head_columns),
            ("b", GaussianNB(var_smoothing=1e-3), tail_columns),
        ]
        if voting == "hard":
            # A majority of two voters is a tie whenever they disagree.
            estimators.append(("c", GaussianNB(), all_columns))
        yield LateFusionClassifier(estimators, voting=voting, cv=3)
    for voting in ["mean", "weighted", "median", "stacking"]:
        yield LateFusionRegressor(
            [
                ("a", Ridge(), head_columns),
                ("b", DecisionTreeRegressor(max_depth=3, random_state=0), tail_columns),
            ],
            voting=voting,
            weights=[2, 1],
            cv=3,
        )


# Two numeric column groups, each through an MLP tower.
TWO_GROUPS = [("a", "passthrough", slice(0, 1)), ("b", "passthrough", slice(1, None))]


def _nets():
    yield MultimodalNetClassifier(TWO_GROUPS, lr=1e-2, device="cpu")
    yield MultimodalNetRegressor(TWO_GROUPS, lr=1e-2, device="cpu")
    yield MultimodalMatcher(
        TWO_GROUPS,
        embedding_dim=4,
        batch_size=16,
        max_epochs=1,
        random_state=0,
        device="cpu",
    )


def row_summary(X):
    """Mean, spread and range of each row: the same 4 features from any width."""
    X = np.asarray(X, dtype=float)
    return np.c_[X.mean(axis=1), X.std(axis=1), X.min(axis=1), X.max(axis=1)]


def _zero_shot():
    # A tiny fitted matcher: numeric items summarised per row (so that the items the
    # checks pass, of any width, can be embedded) and a text column that a
    # CountVectorizer reads (the side that embeds the prompts).
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame(rng.normal(size=(40, 2)), columns=["x0", "x1"])
    pairs["text"] = [f"word{i % 4}" for i in range(40)]
    matcher = MultimodalMatcher(
        [
            ("x", FunctionTransformer(row_summary), ["x0", "x1"]),
            ("text", CountVectorizer(), "text"),
        ],
        embedding_dim=4,
        batch_size=16,
        max_epochs=1,
        random_state=0,
        device="cpu",
    )
    yield ZeroShotClassifier(matcher.fit(pairs))


_STOCHASTIC_WEIGHTS = (
    "trained by minibatch gradient descent from a random start: weighting a row by 2 "
    "and repeating it give different batches, hence different weights (scikit-learn "
    "lists this check as failing for its SGD and MLP estimators too); "
    "test_nn.py checks that sample_weight weighs the loss"
)
_MATCHER_THRESHOLD = (
    "decision_function is the similarity of each pair and predict thresholds it at "
    "threshold_, not at 0; scikit-learn lists this check as failing for "
    "TunedThresholdClassifierCV for the same reason"
)


_CLASSES_FIRST = (
    "calls a transformer's partial_fit(X, y) with class labels and no classes=: "
    "every skmm estimator trained on labels requires classes= on the first "
    "partial_fit call (scikit-learn's rule for classifiers, one meaning everywhere); "
    "test_streaming.py checks partial_fit with classes="
)
_FLOAT32_EMBEDDINGS = (
    "the matcher's float32 embeddings differ by ~1e-7 between batch compositions "
    "(the BLAS picks its kernels by shape), past the check's rtol of 1e-7 on the "
    "float64 similarities; test_matcher.py checks batch independence to 1e-5"
)


def _expected_failures(estimator):
    """The checks each instance is expected to fail, with the reason."""
    if isinstance(estimator, AudioEncoder):
        failures = {"check_n_features_in_after_fitting": _CLASSES_FIRST}
        if estimator.max_epochs == 0:
            # fit trains nothing, so the check's partial_fit is the first training.
            failures["check_fit_score_takes_y"] = _CLASSES_FIRST
        return failures
    if isinstance(estimator, MultimodalNetRegressor):
        return {
            "check_sample_weight_equivalence_on_dense_data": _STOCHASTIC_WEIGHTS,
            "check_methods_subset_invariance": (
                "float32 matrix products differ by ~1e-7 between batch sizes (the "
                "BLAS picks its kernels by shape); the head sums standardised "
                "features of unit scale into small predictions, past the check's "
                "rtol of 1e-7 on the float64 output. test_net_training.py checks "
                "batch independence to 1e-5."
            ),
        }
    if isinstance(estimator, MultimodalNetClassifier):
        return {"check_sample_weight_equivalence_on_dense_data": _STOCHASTIC_WEIGHTS}
    if isinstance(estimator, ZeroShotClassifier):
        return {
            "check_estimators_overwrite_params": (
                "the matcher parameter is a fitted estimator, which fit leaves "
                "untouched (test_zeroshot.py checks its hash), but the check hashes "
                "a deepcopy of it, and a deepcopied fitted LogisticRegression (the "
                "matcher's calibrator_) hashes differently from the original"
            ),
            "check_methods_subset_invariance": (
                "the matcher's float32 embeddings differ by ~1e-7 between batch "
                "compositions, and the softmax at the matcher's temperature "
                "(~0.07) magnifies that past the check's rtol of 1e-7"
            ),
        }
    if isinstance(estimator, MultimodalFuser) and estimator.fusion in (
        "concat",
        "tensor",
    ):
        return {
            "check_estimators_nan_inf": (
                "a NaN in one of a modality's cells is not a missing modality (every "
                "cell is missing): it reaches the modality's encoder, here a "
                "StandardScaler that keeps it, as in ColumnTransformer (which "
                "scikit-learn lists as failing this check); a missing modality is "
                "refused (test_fuser.py)"
            )
        }
    if isinstance(estimator, MultimodalMatcher):
        return {
            "check_sample_weight_equivalence_on_dense_data": _STOCHASTIC_WEIGHTS,
            "check_classifiers_train": _MATCHER_THRESHOLD,
            "check_classifiers_classes": (
                "compares the sign of decision_function with predict: the similarity "
                "is thresholded at threshold_, not at 0"
            ),
            "check_classifiers_one_label": (
                "y all 1 is valid for a matcher (every row is a matching pair): "
                "predictions then depend on each pair's similarity, not on a single "
                "class"
            ),
        }
    return {}


@parametrize_with_checks(
    [*_encoders(), *_fusers(), *_late_fusion(), *_nets(), *_zero_shot()],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check, request):
    # Rounding that depends on the machine's kernels: expected to fail on some
    # CPUs and to pass on others, so not strict.
    name = getattr(check, "func", check).__name__
    if (
        isinstance(estimator, MultimodalMatcher)
        and name == "check_methods_subset_invariance"
    ):
        request.applymarker(pytest.mark.xfail(reason=_FLOAT32_EMBEDDINGS, strict=False))
    check(estimator)


INPUT_INDEPENDENT_CHECKS = [
    ec.check_no_attributes_set_in_init,
    ec.check_parameters_default_constructible,
    ec.check_get_params_invariance,
    ec.check_set_params,
    ec.check_estimator_cloneable,
    ec.check_estimator_repr,
    ec.check_do_not_raise_errors_in_init_or_set_params,
    ec.check_mixin_order,
    ec.check_valid_tag_types,
    ec.check_estimator_tags_renamed,
]


@pytest.mark.parametrize(
    "estimator",
    [ImageEncoder("cnn", device="cpu"), TextEncoder(device="cpu")],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("check", INPUT_INDEPENDENT_CHECKS, ids=lambda c: c.__name__)
def test_input_independent_checks(estimator, check):
    check(type(estimator).__name__, estimator)
