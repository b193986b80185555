"""Throughput of each backbone kind, and the size of a pickled fitted encoder.

For every kind of backbone skmm resolves (the default EfficientNet-Lite0, torchvision,
timm, Hugging Face image/text/audio, open_clip image/text, wordllama, and the small
nets trained from scratch), prints the items/s of ``transform`` (decoding,
preprocessing and the forward pass), the items/s of the raw ``module_`` forward on the
same, already prepared tensors, their ratio (1.0: no overhead), and the size of
``pickle.dumps(encoder)``.

Real weights where they install with skmm (EfficientNet-Lite0, wordllama); elsewhere the architecture with random weights, saved to a temporary
folder and loaded from there as a downloaded checkpoint would be: the timings do not
depend on the weights' values.

    python benchmarks/bench_backbones.py
"""

import csv
import json
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _data import fashion, fsdd_waves

from skmm.encoders import AudioEncoder, ImageEncoder, TextEncoder

BATCH = 32


def best_of(fn, repeats=2):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(name, encoder, items):
    start = time.perf_counter()
    encoder.fit(items)
    fit_time = time.perf_counter() - start
    column = encoder._check_input(items, reset=False)
    rows = np.arange(len(items))
    tensors = [
        encoder._load(column, rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)
    ]
    module = encoder.module_.eval()

    def raw():
        with torch.inference_mode():
            for batch in tensors:
                module(batch)

    raw_time = best_of(raw)
    ours = best_of(lambda: encoder.transform(items))
    size = len(pickle.dumps(encoder)) / 1e6
    print(
        f"| {name} | {len(items) / ours:.1f} | {len(items) / raw_time:.1f} | "
        f"{raw_time / ours:.2f} | {size:.1f} MB | {fit_time:.1f} s |",
        flush=True,
    )


def tiny_hub_models(folder):
    """Hub architectures of realistic size, random weights, saved as the hubs do."""
    import open_clip
    import timm
    import transformers
    from safetensors.torch import save_file

    torch.manual_seed(0)
    paths = {}
    paths["timm"] = folder / "efficientnet_b0.safetensors"
    save_file(timm.create_model("efficientnet_b0").state_dict(), str(paths["timm"]))
    vit = folder / "vit"
    config = transformers.ViTConfig(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        image_size=96,
        patch_size=16,
        intermediate_size=1536,
    )
    transformers.ViTModel(config).save_pretrained(vit)
    transformers.ViTImageProcessor(size={"height": 96, "width": 96}).save_pretrained(
        vit
    )
    paths["hf image"] = vit
    bert = folder / "bert"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
        chr(c) for c in range(ord("a"), ord("z") + 1)
    ]
    bert.mkdir()
    (bert / "vocab.txt").write_text("\n".join(words) + "\n")
    transformers.BertTokenizerFast(str(bert / "vocab.txt")).save_pretrained(bert)
    transformers.BertModel(
        transformers.BertConfig(
            vocab_size=len(words),
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=6,
            intermediate_size=1536,
        )
    ).save_pretrained(bert)
    paths["hf text"] = bert
    w2v = folder / "wav2vec2"
    transformers.Wav2Vec2Model(
        transformers.Wav2Vec2Config(
            hidden_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=1024,
        )
    ).save_pretrained(w2v)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=8000).save_pretrained(w2v)
    paths["hf audio"] = w2v
    cfg = folder / "bench-clip.json"
    cfg.write_text(
        json.dumps(
            {
                "embed_dim": 256,
                "vision_cfg": {
                    "image_size": 96,
                    "layers": 6,
                    "width": 384,
                    "patch_size": 16,
                    "head_width": 64,
                },
                "text_cfg": {
                    "context_length": 32,
                    "vocab_size": 49408,
                    "width": 256,
                    "heads": 4,
                    "layers": 6,
                },
            }
        )
    )
    open_clip.add_model_config(cfg)
    paths["open_clip"] = folder / "bench-clip.pt"
    torch.save(open_clip.create_model("bench-clip").state_dict(), paths["open_clip"])
    return paths


def main():
    torch.set_num_threads(1)
    photos, _ = fashion(128)
    with open(Path(photos[0]).parents[1] / "styles.csv", encoding="utf-8") as f:
        titles = [r["productDisplayName"] for r in csv.DictReader(f)][:512]
    waves = fsdd_waves(128)
    cpu = dict(device="cpu", batch_size=BATCH)
    print(f"torch {torch.__version__}, 1 thread, batch {BATCH}; photos 96x96 JPEG")
    print(
        "| backbone | transform items/s | raw forward items/s | ratio | pickle | fit |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        paths = tiny_hub_models(Path(tmp))
        cases = [
            (
                "ImageEncoder('cnn'), 128 photos",
                ImageEncoder("cnn", max_epochs=0, **cpu),
                photos,
            ),
            (
                "ImageEncoder('resnet18') at 96 px, 128 photos",
                ImageEncoder("resnet18", max_epochs=0, **cpu),
                photos,
            ),
            (
                "ImageEncoder() (EfficientNet-Lite0) at 224 px, 128 photos",
                ImageEncoder(**cpu),
                photos,
            ),
            (
                "ImageEncoder(image_size=96) (EfficientNet-Lite0), 128 photos",
                ImageEncoder(image_size=96, **cpu),
                photos,
            ),
            (
                "ImageEncoder('timm:efficientnet_b0') at 224 px (its config), 128 photos",
                ImageEncoder("timm:efficientnet_b0", weights=str(paths["timm"]), **cpu),
                photos,
            ),
            (
                "ImageEncoder('hf:' ViT-S/16 at 96 px), 128 photos",
                ImageEncoder(f"hf:{paths['hf image']}", **cpu),
                photos,
            ),
            (
                "ImageEncoder('open_clip:' ViT 6x384 at 96 px), 128 photos",
                ImageEncoder(
                    "open_clip:bench-clip", weights=str(paths["open_clip"]), **cpu
                ),
                photos,
            ),
            (
                "TextEncoder('lstm'), 512 titles",
                TextEncoder("lstm", max_epochs=0, **cpu),
                titles,
            ),
            (
                "TextEncoder('wordllama'), 512 titles",
                TextEncoder("wordllama", **cpu),
                titles,
            ),
            (
                "TextEncoder('hf:' BERT 6x384), 512 titles",
                TextEncoder(f"hf:{paths['hf text']}", **cpu),
                titles,
            ),
            (
                "TextEncoder('open_clip:' text 6x256), 512 titles",
                TextEncoder(
                    "open_clip:bench-clip", weights=str(paths["open_clip"]), **cpu
                ),
                titles,
            ),
            (
                "AudioEncoder('cnn'), 128 FSDD sounds (1 s, 8 kHz)",
                AudioEncoder(8000, max_epochs=0, **cpu),
                waves,
            ),
            (
                "AudioEncoder('hf:' wav2vec2 4x256), 128 FSDD sounds",
                AudioEncoder(8000, backbone=f"hf:{paths['hf audio']}", **cpu),
                waves,
            ),
        ]
        for name, encoder, items in cases:
            measure(name, encoder, items)


if __name__ == "__main__":
    main()
