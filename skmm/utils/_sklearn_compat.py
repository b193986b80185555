"""The one place that imports scikit-learn's private helpers.

scikit-learn keeps parameter validation and ``_fit_context`` private; skrub and
imbalanced-learn import them through a single compatibility module so that a change
in scikit-learn touches one file. skmm does the same.
"""

from sklearn.base import _fit_context
from sklearn.pipeline import _name_estimators
from sklearn.utils._indexing import (
    _determine_key_type,
    _get_column_indices,
    _safe_indexing,
)
from sklearn.utils._param_validation import (
    HasMethods,
    Hidden,
    Interval,
    RealNotInt,
    StrOptions,
)
from sklearn.utils._repr_html.estimator import _VisualBlock
from sklearn.utils._set_output import (
    _get_container_adapter,
    _get_output_config,
    _safe_set_output,
)
from sklearn.utils._user_interface import _print_elapsed_time
from sklearn.utils.metadata_routing import _raise_for_params, _routing_enabled
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import (
    _check_feature_names,
    _check_feature_names_in,
    _check_method_params,
    _check_n_features,
    _check_sample_weight,
    validate_data,
)

__all__ = [
    "HasMethods",
    "Hidden",
    "Interval",
    "RealNotInt",
    "StrOptions",
    "_BaseComposition",
    "_VisualBlock",
    "_check_feature_names",
    "_check_feature_names_in",
    "_check_method_params",
    "_check_n_features",
    "_check_sample_weight",
    "_determine_key_type",
    "_fit_context",
    "_get_container_adapter",
    "_get_column_indices",
    "_get_output_config",
    "_name_estimators",
    "_print_elapsed_time",
    "_raise_for_params",
    "_routing_enabled",
    "_safe_set_output",
    "_safe_indexing",
    "validate_data",
]
