"""scikit-learn's estimator checks on every skmm estimator.

Estimators that take a 2-D numeric array (the audio encoders read each row as a
waveform) run the full ``parametrize_with_checks`` suite. ImageEncoder and TextEncoder
take no 2-D array, so scikit-learn skips its checks for them; the input-independent
checks are run one by one here and the rest are tested on images and texts in their
own test files.
"""

import pytest
from sklearn.utils import estimator_checks as ec
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmm.encoders import AudioEncoder, AudioFeatures, ImageEncoder, TextEncoder

# Tiny settings: waveforms of a few samples at 100 Hz, one short epoch, on the CPU.
TINY_AUDIO = dict(sample_rate=100, duration=0.2, n_fft=16, n_mels=4, device="cpu")


def _instances():
    yield AudioEncoder(**TINY_AUDIO, max_epochs=1, batch_size=8)
    yield AudioEncoder(**TINY_AUDIO, max_epochs=0)
    yield AudioFeatures(sample_rate=100, n_fft=16, n_mels=8, n_mfcc=4)


XFAIL = {}


@parametrize_with_checks(
    list(_instances()), expected_failed_checks=lambda e: XFAIL.get(type(e), {})
)
def test_sklearn_compatible(estimator, check):
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
