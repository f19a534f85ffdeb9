"""Importers for image folders: ImageNet-style class sub-folders, and captioned folders with sidecars."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from pixelforge.errors import UsageError
from pixelforge.media import images_under
from pixelforge.sources.base import Failure, Record
from pixelforge.store.schema import consent_value

SIDECAR_LICENCE_KEYS = ("license", "license_url", "attribution", "source_url")
# A sidecar's "consent" fills the consent column (source "sidecar"); like the licence keys it is
# not kept in meta. Where the consent came from stays a closed vocabulary the audit counts by, so a
# sidecar's own notes on it (a release form's id, a "consent_source") are kept in meta, not there.
SIDECAR_CONSENT_KEY = "consent"


def _check_dir(path: str, flag: str) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"{flag} {path}: no such directory; pass the folder that holds the images")
    return root


def _read(path: Path) -> bytes | Failure:
    try:
        return path.read_bytes()
    except OSError as exc:
        return Failure(str(path), "missing_file", f"cannot read: {exc.strerror or exc}")


@dataclass
class ImageFolderSource:
    """ImageNet layout: ``ROOT/<class name>/<image>``; classes are the sorted sub-folder names.

    Label ids follow torchvision's ImageFolder (sorted class names), so models trained elsewhere
    on the same folder agree with ours.
    """

    root: str
    kind: ClassVar[str] = "imagefolder"
    extra_fields: ClassVar[tuple[pa.Field, ...]] = ()

    def validate(self) -> None:
        _check_dir(self.root, "imagefolder ROOT")
        if not self.classes():
            raise UsageError(
                f"imagefolder ROOT {self.root} has no class sub-folders: expected "
                "ROOT/<class>/<image>; use `pixelforge import folder` for a flat folder"
            )

    def classes(self) -> list[str]:
        root = Path(self.root)
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def count(self) -> int | None:
        return sum(len(images_under(Path(self.root) / name)) for name in self.classes())

    def records(self) -> Iterator[Record | Failure]:
        for label, name in enumerate(self.classes()):
            for path in images_under(Path(self.root) / name):
                data = _read(path)
                if isinstance(data, Failure):
                    yield data
                    continue
                yield Record(source=str(path), image=data, label=label, label_name=name)


@dataclass
class FolderSource:
    """A folder of images, each with an optional same-name ``.txt`` caption and ``.json`` sidecar.

    The sidecar's ``license``, ``license_url``, ``attribution`` and ``source_url`` fill those
    columns, its ``consent`` (granted, denied, unknown, or yes/no/true/false) the consent column;
    its other keys are kept in ``meta``. The usual layout of fine-tuning sets.
    """

    root: str
    kind: ClassVar[str] = "folder"
    extra_fields: ClassVar[tuple[pa.Field, ...]] = ()

    def validate(self) -> None:
        _check_dir(self.root, "folder ROOT")

    def count(self) -> int | None:
        return len(images_under(Path(self.root)))

    def records(self) -> Iterator[Record | Failure]:
        for path in images_under(Path(self.root)):
            yield folder_record(path)


def folder_record(path: Path) -> Record | Failure:
    """One image of a captioned folder with its ``.txt`` caption and ``.json`` sidecar (FolderSource)."""
    data = _read(path)
    if isinstance(data, Failure):
        return data
    caption = _caption(path)
    sidecar = _sidecar(path)
    if isinstance(sidecar, Failure):
        return sidecar
    meta = {k: v for k, v in sidecar.items() if k not in (*SIDECAR_LICENCE_KEYS, SIDECAR_CONSENT_KEY)}
    if sidecar.get("source_url"):
        meta["source_url"] = sidecar["source_url"]
    consent, consent_source = sidecar_consent(sidecar)
    return Record(
        source=str(path),
        image=data,
        caption=caption,
        caption_source="sidecar" if caption is not None else None,
        license=_text(sidecar.get("license")),
        license_url=_text(sidecar.get("license_url")),
        attribution=_text(sidecar.get("attribution")),
        consent=consent,
        consent_source=consent_source,
        meta=meta or None,
    )


def sidecar_consent(sidecar: dict[str, Any]) -> tuple[str | None, str | None]:
    """(consent, consent_source) a sidecar states: (None, None) when it has no "consent" or it is null
    (the image's XMP or --consent decide); a value that reads as none of the states is unknown, with
    the value in its source, ``sidecar (unreadable 'maybe')``: the sample is kept, the doubt recorded."""
    raw = sidecar.get(SIDECAR_CONSENT_KEY)
    if raw is None:
        return None, None
    state = consent_value(raw)
    if state is None:
        text = raw if isinstance(raw, str) else json.dumps(raw)
        return "unknown", f"sidecar (unreadable {text[:40]!r})"
    return state, "sidecar"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _caption(image: Path) -> str | None:
    path = image.with_suffix(".txt")
    if not path.is_file():
        return None
    text = path.read_bytes().decode("utf-8", errors="replace").strip()
    return text or None


def _sidecar(image: Path) -> dict[str, Any] | Failure:
    path = image.with_suffix(".json")
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return Failure(str(image), "bad_annotation", f"sidecar {path.name} is not valid JSON: {exc}")
    if not isinstance(doc, dict):
        return Failure(str(image), "bad_annotation", f"sidecar {path.name} must hold a JSON object")
    return doc
