"""Real data for the benchmarks, from ../shared/data (or SKMM_SHARED_DATA)."""

import csv
import os
from pathlib import Path

import numpy as np

SHARED = Path(
    os.environ.get(
        "SKMM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


def fashion(n):
    """The first ``n`` fashion items: image paths and subCategory labels."""
    with open(SHARED / "fashion" / "styles.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    paths = [str(SHARED / "fashion" / "images" / f"{r['id']}.jpg") for r in rows]
    return paths, np.array([r["subCategory"] for r in rows])


def fashion_table(n):
    """The first ``n`` fashion items as a table (photo path, title) and their
    masterCategory labels."""
    import pandas as pd

    with open(SHARED / "fashion" / "styles.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    X = pd.DataFrame(
        {
            "image": [
                str(SHARED / "fashion" / "images" / f"{r['id']}.jpg") for r in rows
            ],
            "title": [r["productDisplayName"] for r in rows],
        }
    )
    return X, np.array([r["masterCategory"] for r in rows])


def fsdd_waves(n):
    from skmm.encoders._audio import read_audio

    root = SHARED / "fsdd" / "recordings"
    return [read_audio(str(root / name), 8000) for name in sorted(os.listdir(root))[:n]]


def pretrained_resnet18(folder):
    """A resnet18 state dict saved to a local file, standing in for downloaded weights."""
    import torch
    from torchvision.models import get_model

    path = Path(folder) / "resnet18.pt"
    torch.manual_seed(0)
    torch.save(get_model("resnet18").state_dict(), path)
    return str(path)
