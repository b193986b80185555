"""Export fitted skmm models to ONNX, to serve them without skmm or torch.

:func:`to_onnx` exports an encoder's tower, a net, or a fuser pipeline;
:func:`onnx_inputs` decodes items into the inputs those graphs take;
:func:`register_skl2onnx_converters` lets ``skl2onnx`` convert pipelines that hold a
:class:`~skmm.fusion.MultimodalFuser`. Needs the
``onnx`` extra: ``pip install 'skmm[onnx]'`` (onnx, onnxscript, onnxruntime,
skl2onnx).
"""

from ._fuser import register_skl2onnx_converters
from ._onnx import onnx_inputs, to_onnx

__all__ = ["onnx_inputs", "register_skl2onnx_converters", "to_onnx"]
