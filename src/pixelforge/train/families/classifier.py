"""Classifiers on the shared loop: cross-entropy on any label column, accuracy and a confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pixelforge.models.classifier import ClassifierConfig, build_classifier
from pixelforge.train.data import Batches, ImageTable
from pixelforge.train.families import Family, class_ids


class ClassifierFamily(Family):
    name = "classifier"
    config_cls = ClassifierConfig
    val_terms = ("val_loss", "val_accuracy")
    monitor = ("val_accuracy", "max")
    log_terms = ("accuracy",)
    train_defaults = {"lr": 2e-3, "weight_decay": 5e-4, "warmup_steps": 50}
    generates = False
    splits_draws = True  # it draws nothing from the step generator (dropout draws from the global RNG)

    def __init__(self, cfg: ClassifierConfig, device: torch.device, train_cfg: Any = None):
        super().__init__(cfg, device, train_cfg)
        self.label_column = cfg.label

    def prepare(self, train: ImageTable, val: ImageTable) -> None:
        self.cfg.num_classes = class_ids(train, f"--label {self.cfg.label}")
        self.cfg.labels = list(train.label_names)

    def build(self) -> dict[str, torch.nn.Module]:
        return {"net": build_classifier(self.cfg).to(self.device, memory_format=torch.channels_last)}

    def meta(self) -> dict[str, Any]:
        return {"labels": self.cfg.labels, "label_column": self.cfg.label}

    def loss_terms(self, modules, x, labels, captions, gen, step, train=True, rows=None):
        x01 = ((x + 1) / 2).to(self.device).contiguous(memory_format=torch.channels_last)
        y = labels.to(self.device)
        logits = modules["net"](x01)
        loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing if train else 0.0)
        return {"loss": loss, "accuracy": (logits.argmax(1) == y).float().mean()}

    @torch.no_grad()
    def predict(self, modules, table: ImageTable, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(predicted class ids, softmax probabilities) for every image of ``table``."""
        net = modules["net"].eval()
        ids, probs = [], []
        for i in range(0, len(table), batch_size):
            x01 = table.images[i : i + batch_size].float().div_(255).to(self.device)
            p = net(x01.contiguous(memory_format=torch.channels_last)).float().softmax(1).cpu()
            probs.append(p)
            ids.append(p.argmax(1))
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.cfg.num_classes), dtype=np.float32)
        return torch.cat(ids).numpy(), torch.cat(probs).numpy()

    @torch.no_grad()
    def validate(self, modules, val: Batches, gen_for, max_batches):
        table = val.table
        ids, probs = self.predict(modules, table)
        y = table.labels.numpy()
        loss = float(F.nll_loss(torch.from_numpy(np.log(np.clip(probs, 1e-12, None))), torch.from_numpy(y)))
        return {"val_loss": loss, "val_accuracy": float((ids == y).mean())}

    def samples(self, modules, gen, steps=25):
        return None

    def finish(self, modules, tables: dict[str, ImageTable]) -> dict[str, Any]:
        """Accuracy, per-class accuracy and the confusion matrix on the val and test splits."""
        out: dict[str, Any] = {}
        for split, table in tables.items():
            if len(table) == 0:
                continue
            ids, _ = self.predict(modules, table)
            out[split] = classification_report(table.labels.numpy(), ids, self.cfg.labels)
        return out


def classification_report(y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy and counts, and ``confusion[true][predicted]`` (rows with y < 0 skipped)."""
    keep = y >= 0
    y, pred = y[keep], pred[keep]
    k = len(names)
    confusion = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    per_class = {
        names[i]: {
            "n": int(confusion[i].sum()),
            "accuracy": float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None,
        }
        for i in range(k)
    }
    return {
        "n": int(len(y)),
        "accuracy": float((y == pred).mean()) if len(y) else None,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "labels": names,
    }
