"""Tiny hub models saved locally, built from configs (no download), for the tests."""

import json

import torch

# Product titles: the tiny BERT's vocabulary is their words.
TITLES = [
    "Nike Men Black Running Shoes",
    "Puma Women Blue Tshirt",
    "Titan Men Silver Watch",
    "Fastrack Unisex Black Sunglasses",
    "Adidas Men White Sports Shoes",
]

# open_clip's name for the tiny CLIP the tests register.
TINY_CLIP_NAME = "skmm-tiny-clip"
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {
        "image_size": 32,
        "layers": 1,
        "width": 32,
        "patch_size": 8,
        "head_width": 16,
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 1,
    },
}


def save_tiny_bert(transformers, folder, texts):
    """A 2-layer BERT whose word-piece vocabulary is the words of ``texts``."""
    torch.manual_seed(0)
    words = sorted({w.lower() for t in texts for w in t.split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def save_tiny_wav2vec2(transformers, folder):
    """A 1-layer wav2vec 2.0 with its feature extractor at 8 kHz."""
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    transformers.Wav2Vec2Model(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(
        sampling_rate=8000, do_normalize=True
    ).save_pretrained(folder)
    return folder


def save_tiny_clip(open_clip, folder):
    """Register :data:`TINY_CLIP` with open_clip and save its random weights."""
    (folder / f"{TINY_CLIP_NAME}.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder / f"{TINY_CLIP_NAME}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    path = folder / "tiny-clip.pt"
    torch.save(model.state_dict(), path)
    return path
