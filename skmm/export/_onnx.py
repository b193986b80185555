"""ONNX export of fitted skmm estimators, and the inputs their graphs take."""

import importlib
import json
import warnings

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ..base import TorchEncoderMixin
from ..fusion import MultimodalFuser
from ..nn._net import MultimodalNetClassifier, _MultimodalNetBase
from ._graphs import EncoderGraph, NetGraph

__all__ = ["onnx_inputs", "to_onnx"]

# ONNX operator set of the exported graphs (torch.onnx's default), which the
# scikit-learn parts converted by skl2onnx share.
OPSET = 18


def optional_import(module):
    """Import a package of the ``onnx`` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"ONNX export needs the optional package {module!r}, which is not "
            "installed: pip install 'skmm[onnx]'"
        ) from None


# -- the inputs --------------------------------------------------------------------------
def _tower_input(enc, column):
    """A tower's decoded batch for every row (zeros where missing), and the mask."""
    n = len(column)
    present = np.zeros(n, dtype=bool)
    rows = column.present()
    present[rows] = True
    if len(rows) == 0:
        raise ValueError(
            "every item is missing: there is no decoded batch to give the graph."
        )
    batch = enc._load(column, rows)
    full = torch.zeros((n, *batch.shape[1:]), dtype=batch.dtype)
    full[torch.from_numpy(rows)] = batch
    return full.numpy(), present


def onnx_inputs(estimator, X):
    """The inputs of the ONNX graph :func:`to_onnx` makes, decoded from ``X`` as skmm does.

    Files are decoded, images resized and cropped to the tower's input size, sounds
    padded or cropped, texts tokenised: the work that stays outside the graph. A
    missing item is a row of zeros, and ``False`` in the mask.

    Parameters
    ----------
    estimator : fitted encoder, net, fuser or pipeline ending with a fuser's head
        The estimator given to :func:`to_onnx`.
    X : sequence of items, or DataFrame
        What the estimator's ``transform`` or ``predict`` takes.

    Returns
    -------
    inputs : dict of str to ndarray
        One array per graph input, by name, ready for
        ``onnxruntime.InferenceSession.run``.

    Examples
    --------
    >>> import numpy as np
    >>> from skmm.encoders import ImageEncoder
    >>> from skmm.export import onnx_inputs
    >>> images = np.zeros((3, 8, 8), dtype=np.uint8)
    >>> enc = ImageEncoder("cnn", max_epochs=0, device="cpu").fit(images)
    >>> {k: v.shape for k, v in onnx_inputs(enc, [images[0], None, images[2]]).items()}
    {'items': (3, 1, 8, 8), 'present': (3,)}
    """
    check_is_fitted(estimator)
    if isinstance(estimator, TorchEncoderMixin):
        column = estimator._check_input(X, reset=False)
        items, present = _tower_input(estimator, column)
        return {"items": items, "present": present}
    if isinstance(estimator, _MultimodalNetBase):
        X = estimator._check_X(X, reset=False)
        columns = estimator._columns(X, reset=False)
        out, available = {}, []
        for (name, enc, _), column in zip(estimator._towers(), columns):
            out[name], present = _tower_input(enc, column)
            available.append(present)
        out["available"] = np.column_stack(available)
        return out
    fuser = _fuser_of(estimator)
    if fuser is not None:
        from ._fuser import fuser_inputs

        return fuser_inputs(fuser, X)
    raise TypeError(_unsupported(estimator))


# -- export ------------------------------------------------------------------------------
def _unsupported(estimator):
    return (
        f"skmm.export handles skmm's image, text and audio encoders, the nets "
        f"(MultimodalNetClassifier, MultimodalNetRegressor), a MultimodalFuser and a "
        f"Pipeline starting with one; got {type(estimator).__name__}."
    )


def _fuser_of(estimator):
    if isinstance(estimator, MultimodalFuser):
        return estimator
    if isinstance(estimator, Pipeline) and isinstance(estimator[0], MultimodalFuser):
        return estimator[0]
    return None


def _dynamic(enc, array):
    """torch.export's dynamic dimensions of a tower input: the rows, and a text's length."""
    Dim = torch.export.Dim
    dims = {0: Dim.DYNAMIC}
    if type(enc).__name__ == "TextEncoder" and array.ndim >= 2:
        dims[array.ndim - 1] = Dim.AUTO
    return dims


def _example(enc):
    """Decoded items a tower can be traced on: two rows of a blank item."""
    kind = type(enc).__name__
    if kind == "ImageEncoder":
        item = np.zeros((*enc.image_size_, 3), dtype=np.uint8)
    elif kind == "TextEncoder":
        item = "an example text"
    elif kind == "AudioEncoder":
        item = np.zeros(max(enc._n_samples(), 1), dtype=np.float32)
    elif kind == "TabularEncoder":
        batch = np.zeros((2, enc.n_features_), dtype=np.float32)
        return batch, np.ones(2, dtype=bool)
    else:
        raise TypeError(_unsupported(enc))
    column = enc._check_input([item, item], reset=False)
    return _tower_input(enc, column)


def _export(module, args, names, outputs, dynamic_shapes, description):
    """torch.onnx.export (the torch.export-based exporter) of ``module`` on ``args``."""
    optional_import("onnxscript")
    onnx = optional_import("onnx")
    module = module.eval()
    with warnings.catch_warnings():
        # torch.export's own deprecations and advice, about its internals.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        program = torch.onnx.export(
            module,
            tuple(torch.from_numpy(a) for a in args),
            input_names=names,
            output_names=outputs,
            dynamic_shapes=dynamic_shapes,
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    program.optimize()
    model = importlib.import_module("onnx.inliner").inline_local_functions(
        program.model_proto
    )
    onnx.helper.set_model_props(
        model,
        {"skmm.estimator": description[0], "skmm.inputs": json.dumps(description[1])},
    )
    onnx.checker.check_model(model)
    return model


def _encoder_model(enc):
    items, present = _example(enc)
    return _export(
        EncoderGraph(enc.module_),
        (items, present),
        ["items", "present"],
        ["features"],
        ({**_dynamic(enc, items)}, {0: torch.export.Dim.DYNAMIC}),
        (
            type(enc).__name__,
            {
                "items": "the decoded items of skmm.export.onnx_inputs (rows of "
                "zeros where an item is missing)",
                "present": "bool, False where the item is missing",
            },
        ),
    )


def _net_model(net):
    towers = net._towers()
    examples, dynamic, names = [], [], []
    for name, enc, _ in towers:
        items, _ = _example(enc)
        examples.append(items)
        dynamic.append(_dynamic(enc, items))
        names.append(name)
    available = np.ones((2, len(towers)), dtype=bool)
    classifier = isinstance(net, MultimodalNetClassifier)
    graph = NetGraph(
        net.module_,
        classifier=classifier,
        y_mean=None if classifier else net.y_mean_,
        y_scale=None if classifier else net.y_scale_,
    )
    output = "proba" if classifier else "prediction"
    inputs = {n: f"the decoded items of tower {n!r}" for n in names}
    inputs["available"] = "bool (n, n_towers), False where a modality is missing"
    return _export(
        graph,
        (*examples, available),
        [*names, "available"],
        [output],
        # forward(*inputs): one structure, the tuple of every input's dimensions.
        ((*dynamic, {0: torch.export.Dim.DYNAMIC}),),
        (type(net).__name__, inputs),
    )


def to_onnx(estimator, path=None):
    """Export a fitted estimator's torch graph (and scikit-learn parts) to ONNX.

    - An image, text or audio encoder: its tower, with the normalisation (images),
      the log-mel spectrogram and its standardisation (sounds) inside; inputs
      ``items`` (the decoded batch) and ``present`` (the mask of the items there);
      output ``features``, NaN where an item is missing, as ``transform`` gives.
    - A net (:class:`~skmm.nn.MultimodalNetClassifier` or
      :class:`~skmm.nn.MultimodalNetRegressor`): its towers, fusion and head; one
      input per tower, named after it, and ``available`` (the rows' modalities
      present); output ``proba`` (softmax) or ``prediction`` (on the target's
      scale).
    - A :class:`~skmm.fusion.MultimodalFuser`, or a pipeline of one and scikit-learn
      steps: the towers, the fuser's imputation, scaling, projection and fusion, and
      the steps converted by skl2onnx (see :func:`register_skl2onnx_converters`).

    What is not in the graph is what turns the user's items into a batch: decoding
    files, resizing and cropping images, padding sounds, tokenising texts.
    :func:`onnx_inputs` does it as skmm does.

    Parameters
    ----------
    estimator : fitted estimator
        An skmm encoder, net, fuser, or a pipeline starting with a fuser.
    path : str or path, default=None
        Where to save the model (``.onnx``); None saves nothing.

    Returns
    -------
    model : onnx.ModelProto
        The exported model; its ``metadata_props`` describe the inputs.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime
    >>> from skmm.encoders import ImageEncoder
    >>> from skmm.export import onnx_inputs, to_onnx
    >>> images = np.random.default_rng(0).integers(0, 256, (4, 8, 8), dtype=np.uint8)
    >>> enc = ImageEncoder("cnn", max_epochs=0, device="cpu").fit(images)
    >>> model = to_onnx(enc)
    >>> session = onnxruntime.InferenceSession(model.SerializeToString())
    >>> features = session.run(None, onnx_inputs(enc, images))[0]
    >>> bool(np.abs(features - enc.transform(images)).max() < 1e-4)
    True
    """
    check_is_fitted(estimator)
    if isinstance(estimator, TorchEncoderMixin):
        model = _encoder_model(estimator)
    elif isinstance(estimator, _MultimodalNetBase):
        model = _net_model(estimator)
    elif _fuser_of(estimator) is not None:
        from ._fuser import fuser_model

        model = fuser_model(estimator)
    else:
        raise TypeError(_unsupported(estimator))
    if path is not None:
        optional_import("onnx").save(model, path)
    return model
