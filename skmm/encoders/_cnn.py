"""The small CNN that images and spectrograms share when no pretrained backbone is used."""

import torch


def small_cnn(in_channels):
    """A small CNN for small images (28x28 to 96x96): 3 conv blocks, 128 features."""

    def block(cin, cout, pool):
        layers = [
            torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(cout),
            torch.nn.ReLU(inplace=True),
        ]
        # ceil_mode keeps tiny inputs (a few spectrogram frames) from vanishing.
        return layers + ([torch.nn.MaxPool2d(2, ceil_mode=True)] if pool else [])

    return torch.nn.Sequential(
        *block(in_channels, 32, True),
        *block(32, 64, True),
        *block(64, 128, False),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
