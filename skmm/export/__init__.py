"""Export fitted skmm models to ONNX, to serve them without skmm or torch.

:func:`to_onnx` exports an encoder's tower, a net, or a fuser pipeline;
:func:`onnx_inputs` decodes items into the inputs those graphs take. Needs the
``onnx`` extra: ``pip install 'skmm[onnx]'`` (onnx, onnxscript, onnxruntime,
skl2onnx).
"""

from ._onnx import onnx_inputs, to_onnx

__all__ = ["onnx_inputs", "to_onnx"]
