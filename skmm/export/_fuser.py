"""A MultimodalFuser (and the scikit-learn steps after it) to ONNX, through skl2onnx.

skl2onnx converts scikit-learn pipelines by looking each step's class up in its
registry; :func:`register_skl2onnx_converters` registers the fuser there. Its
converter writes, for each modality, the encoder's graph (a tower exported by
torch, or a scikit-learn transformer converted by skl2onnx), then the steps the
fuser fitted between the encoder and the fusion (imputation, scaling, PCA, the
block's scale), then the fusion operator. The pipeline's head (``LogisticRegression``,
``SVC``...) is skl2onnx's own.

The graph's inputs, in the order of the fuser's modalities: for an skmm encoder, its
decoded batch (named after the modality) and ``<name>__present`` (False where the
item is missing: the tower's output is NaN there, and the fuser's imputer fills it as
``missing`` says); for any other encoder, its selected columns as one 2-D input
(strings for a transformer fitted on strings, else floats), with no missing value.
"""

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ..base import TorchEncoderMixin
from ..fusion import MultimodalFuser
from ..utils._composition import check_table
from ._onnx import OPSET, _encoder_model, _tower_input, optional_import

__all__ = ["fuser_inputs", "fuser_model", "register_skl2onnx_converters"]

_ALIAS = "SkmmMultimodalFuser"
# The ONNX-ML operator set of skl2onnx's converters at OPSET.
_ML_OPSET = 3


def _unsupported(fuser):
    """Why the fuser cannot be converted, or None."""
    if fuser.projection in ("proba", "decision", "cca", "pls"):
        return (
            f"projection={fuser.projection!r}: its cross-fitted classifier or "
            "cross-decomposition has no ONNX converter in skmm yet; use "
            "projection=None or an int (PCA)"
        )
    if fuser.fusion == "tensor":
        return "fusion='tensor' (outer products) has no ONNX converter in skmm yet"
    if fuser.missing == "indicator":
        return "missing='indicator' has no ONNX converter in skmm yet"
    if fuser.sparse_output_:
        return "a sparse block stays sparse through the fusion; ONNX graphs are dense"
    return None


def _modalities(fuser):
    """The fused ``(name, encoder, width)`` of each modality, in the graph's input
    order: ``width`` is the number of columns the modality selects."""
    return [
        (m.name, m.estimator, len(m.indices))
        for m in fuser.modalities_.active
        if m.name in fuser.block_transformers_
    ]


def _takes_strings(enc):
    categories = getattr(enc, "categories_", None)
    if categories is not None:
        return any(np.asarray(c).dtype.kind in "OUS" for c in categories)
    return hasattr(enc, "vocabulary_")


def fuser_inputs(fuser, X):
    """The graph's inputs for the rows of ``X`` (see the module's description)."""
    X = check_table(fuser, X, reset=False)
    out = {}
    for name, enc, _ in _modalities(fuser):
        selection = fuser.modalities_.select(X, name)
        if isinstance(enc, TorchEncoderMixin):
            column = enc._check_input(selection, reset=False)
            out[name], out[f"{name}__present"] = _tower_input(enc, column)
            continue
        array = np.asarray(selection).reshape(len(X), -1)
        out[name] = array.astype(str if _takes_strings(enc) else np.float32)
    return out


def _input_types(fuser):
    from skl2onnx.common.data_types import (
        BooleanTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    from ._onnx import _dynamic, _example

    types = []
    for name, enc, width in _modalities(fuser):
        if isinstance(enc, TorchEncoderMixin):
            example, _ = _example(enc)
            dynamic = _dynamic(enc, example)
            shape = [None if i in dynamic else d for i, d in enumerate(example.shape)]
            kind = FloatTensorType if example.dtype == np.float32 else Int64TensorType
            types += [
                (name, kind(shape)),
                (f"{name}__present", BooleanTensorType([None])),
            ]
        else:
            kind = StringTensorType if _takes_strings(enc) else FloatTensorType
            types.append((name, kind([None, width])))
    return types


# -- splicing converted graphs into the one skl2onnx builds ------------------------------
def _splice(model, scope, container, inputs):
    """Copy ``model``'s graph into ``container``, its inputs bound to ``inputs``.

    Every name is made unique in ``scope``; returns the names of its outputs.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    versions = {o.domain: o.version for o in model.opset_import}
    initialized = {init.name for init in graph.initializer}
    free = [i for i in graph.input if i.name not in initialized]
    names = {i.name: given for i, given in zip(free, inputs)}
    for init in graph.initializer:
        names[init.name] = scope.get_unique_variable_name(f"skmm_{init.name}")
        tensor = numpy_helper.from_array(numpy_helper.to_array(init))
        container.add_initializer(
            names[init.name], init.data_type, list(init.dims), tensor
        )
    for node in graph.node:
        if any(a.type in (5, 10) for a in node.attribute):  # GRAPH, GRAPHS
            raise NotImplementedError(
                f"a {node.op_type} node with a subgraph cannot be spliced into the "
                "fuser's graph"
            )
        outputs = []
        for out in node.output:
            if out:
                names[out] = scope.get_unique_variable_name(f"skmm_{out}")
            outputs.append(names.get(out, ""))
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        container.add_node(
            node.op_type,
            [names[i] if i else "" for i in node.input],
            outputs,
            op_domain=node.domain,
            op_version=versions[node.domain],
            name=scope.get_unique_operator_name(f"skmm_{node.op_type}"),
            **attrs,
        )
    return [names[o.name] for o in graph.output]


def _sklearn_graph(estimator, input_type):
    from skl2onnx import convert_sklearn

    return convert_sklearn(
        estimator,
        initial_types=[("x", input_type)],
        target_opset={"": OPSET, "ai.onnx.ml": _ML_OPSET},
    )


def _constant(scope, container, value):
    name = scope.get_unique_variable_name("skmm_factor")
    container.add_initializer(name, 1, [], [float(value)])  # FLOAT
    return name


def _node(scope, container, op, inputs, **attrs):
    out = scope.get_unique_variable_name(f"skmm_{op.lower()}")
    container.add_node(
        op, inputs, [out], name=scope.get_unique_operator_name(f"skmm_{op}"), **attrs
    )
    return out


def _as_float(scope, container, name):
    return _node(scope, container, "Cast", [name], to=1)  # FLOAT


def _convert(scope, operator, container):
    from skl2onnx.common.data_types import FloatTensorType

    fuser = operator.raw_operator
    inputs = iter(operator.inputs)
    blocks = []
    for name, enc, width in _modalities(fuser):
        if isinstance(enc, TorchEncoderMixin):
            graph = _encoder_model(enc)
            items, present = next(inputs), next(inputs)
            (out,) = _splice(
                graph, scope, container, [items.full_name, present.full_name]
            )
        else:
            variable = next(inputs)
            graph = _sklearn_graph(enc, type(variable.type)([None, width]))
            out = _splice(graph, scope, container, [variable.full_name])[0]
        out = _as_float(scope, container, out)
        width = fuser._encoded_widths_[name]
        for _, step in fuser.block_transformers_[name].steps:
            if isinstance(step, str):  # "passthrough"
                continue
            graph = _sklearn_graph(step, FloatTensorType([None, width]))
            out = _splice(graph, scope, container, [out])[0]
            width = len(step.get_feature_names_out())
        blocks.append(_as_float(scope, container, out))
    names = [name for name, _, _ in _modalities(fuser)]
    weights = [
        1.0 if fuser.weights is None else fuser.weights.get(n, 1.0) for n in names
    ]
    scales = [fuser.block_scales_[n] for n in names]
    fusion = fuser.fusion
    if fusion == "mean":
        total = sum(weights)
        weights = [w / total for w in weights]
    if fusion in ("product", "max"):
        weights = [1.0] * len(weights)  # they take no weights
    scaled = [
        b
        if s * w == 1.0
        else _node(scope, container, "Mul", [b, _constant(scope, container, s * w)])
        for b, s, w in zip(blocks, scales, weights)
    ]
    if fusion == "concat":
        fused = _node(scope, container, "Concat", scaled, axis=1)
    else:
        op = {
            "sum": "Sum",
            "weighted": "Sum",
            "mean": "Sum",
            "product": "Mul",
            "max": "Max",
        }[fusion]
        fused = scaled[0]
        for block in scaled[1:]:
            fused = _node(
                scope, container, op if op != "Sum" else "Add", [fused, block]
            )
    container.add_node(
        "Identity",
        [fused],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("skmm_fused"),
    )


def _shape(operator):
    from skl2onnx.common.data_types import FloatTensorType

    fuser = operator.raw_operator
    operator.outputs[0].type = FloatTensorType(
        [None, len(fuser.get_feature_names_out())]
    )


def _parse(scope, model, inputs, custom_parsers=None):
    from skl2onnx.common.data_types import FloatTensorType

    operator = scope.declare_local_operator(_ALIAS, model)
    operator.inputs = list(inputs)
    fused = scope.declare_local_variable("fused", FloatTensorType())
    operator.outputs.append(fused)
    return operator.outputs


def register_skl2onnx_converters():
    """Register :class:`~skmm.fusion.MultimodalFuser` with skl2onnx.

    After this, ``skl2onnx.to_onnx`` converts a pipeline that starts with a fitted
    fuser, given the initial types of the fuser's inputs (:func:`skmm.export.to_onnx`
    works them out and calls it).

    Examples
    --------
    >>> from skmm.export import register_skl2onnx_converters
    >>> register_skl2onnx_converters()
    """
    skl2onnx = optional_import("skl2onnx")
    skl2onnx.update_registered_converter(
        MultimodalFuser, _ALIAS, _shape, _convert, parser=_parse
    )


def fuser_model(estimator):
    """The ONNX model of a fitted fuser, or of a pipeline that starts with one."""
    fuser = estimator if isinstance(estimator, MultimodalFuser) else estimator[0]
    check_is_fitted(fuser)
    reason = _unsupported(fuser)
    if reason is not None:
        raise NotImplementedError(
            f"cannot export this MultimodalFuser to ONNX: {reason}."
        )
    register_skl2onnx_converters()
    skl2onnx = optional_import("skl2onnx")
    options = {}
    if isinstance(estimator, Pipeline) and hasattr(estimator[-1], "predict_proba"):
        options[id(estimator[-1])] = {"zipmap": False}
    return skl2onnx.to_onnx(
        estimator,
        initial_types=_input_types(fuser),
        target_opset={"": OPSET, "ai.onnx.ml": _ML_OPSET},
        options=options,
    )
