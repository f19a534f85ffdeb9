"""Signed C2PA manifests: "this image was made by an AI model", with the model and prompt, signed offline.

c2pa-python (the Content Authenticity Initiative's c2pa-rs) builds and signs the manifest and
embeds it in the PNG; `verify` reads it back and reports whether the signature and the hash of
the image data still hold. The certificate chain and key are the user's (PEM files); pixelforge
never makes or ships one (the tests make a throwaway chain with `cryptography`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixelforge import __version__
from pixelforge.errors import UsageError

AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def _algorithm(key_pem: bytes) -> str:
    """The C2PA signing algorithm for a private key: es256/384/512 (EC), ed25519, or ps256 (RSA)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--c2pa-key: not an unencrypted PEM private key ({exc})") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {256: "es256", 384: "es384", 521: "es512"}
        if key.curve.key_size not in algs:
            raise UsageError(f"--c2pa-key: EC curve {key.curve.name} is not one C2PA signs with (P-256/384/521)")
        return algs[key.curve.key_size]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise UsageError("--c2pa-key: use an EC (P-256/384/521), Ed25519 or RSA key")


class ManifestSigner:
    """Signs PNG bytes with a manifest naming the model, run and prompt (one signer per generate run)."""

    def __init__(self, cert_path: str, key_path: str):
        import c2pa

        for flag, p in (("--c2pa-cert", cert_path), ("--c2pa-key", key_path)):
            if not Path(p).is_file():
                raise UsageError(f"{flag} {p}: no such file")
        chain, key = Path(cert_path).read_bytes(), Path(key_path).read_bytes()
        if b"BEGIN CERTIFICATE" not in chain:
            raise UsageError(f"--c2pa-cert {cert_path}: not a PEM certificate chain (signer first, then its CAs)")
        alg = _algorithm(key)
        try:
            self._signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg.encode(), chain, key, None))
        except c2pa.C2paError as exc:
            raise UsageError(f"--c2pa-cert/--c2pa-key: c2pa refuses them: {exc}") from None
        self._c2pa = c2pa
        # no thumbnail: the image itself is small, and a thumbnail would add ~30 KB to every file
        self._context = c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))

    def sign_png(
        self,
        png: bytes,
        title: str,
        model: str,
        run_id: str,
        prompt: str | None,
        seed: int,
        watermark: dict[str, Any] | None = None,
    ) -> bytes:
        """``png`` with a signed manifest: created by pixelforge's ``model``, with the watermark's methods
        and payload (so an image whose manifest is stripped can be tied back to it by its watermark)."""
        params: dict[str, Any] = {"model": model, "run_id": run_id, "seed": seed}
        if prompt:
            params["prompt"] = prompt
        if watermark:
            params["watermark"] = watermark
        manifest = {
            "claim_generator_info": [{"name": "pixelforge", "version": __version__}],
            "title": title,
            "format": "image/png",
            "assertions": [
                {
                    "label": "c2pa.actions",
                    "data": {
                        "actions": [
                            {
                                "action": "c2pa.created",
                                "digitalSourceType": AI_SOURCE_TYPE,
                                "softwareAgent": {"name": "pixelforge", "version": __version__},
                                "parameters": params,
                            }
                        ]
                    },
                }
            ],
        }
        builder = self._c2pa.Builder.from_json(manifest, self._context)
        out = io.BytesIO()
        try:
            builder.sign(self._signer, "image/png", io.BytesIO(png), out)
        except self._c2pa.C2paError as exc:
            raise UsageError(
                f"C2PA signing failed: {exc} (check that --c2pa-cert holds the chain of --c2pa-key)"
            ) from None
        return out.getvalue()


@dataclass
class ManifestCheck:
    found: bool
    state: str | None = None  # c2pa's validation state: Valid, Trusted or Invalid
    ai_generated: bool = False
    generator: str | None = None
    issuer: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # validation failure codes


def read_manifest(data: bytes, mime: str = "image/png") -> ManifestCheck:
    """The active manifest of an image and whether it still validates (a changed pixel breaks its hash)."""
    import c2pa

    try:
        reader = c2pa.Reader(mime, io.BytesIO(data))
    except c2pa.C2paError:
        return ManifestCheck(found=False)
    try:
        manifest = reader.get_active_manifest() or {}
        state = reader.get_validation_state()
        results = reader.get_validation_results() or {}
    finally:
        reader.close()
    failures = (results.get("activeManifest") or {}).get("failure") or []
    actions = [
        a
        for assertion in manifest.get("assertions", [])
        if assertion.get("label", "").startswith("c2pa.actions")
        for a in assertion.get("data", {}).get("actions", [])
    ]
    created = next((a for a in actions if a.get("action") == "c2pa.created"), {})
    generator = next((g.get("name") for g in manifest.get("claim_generator_info", [])), None)
    return ManifestCheck(
        found=True,
        state=state,
        ai_generated=created.get("digitalSourceType") == AI_SOURCE_TYPE,
        generator=generator,
        issuer=(manifest.get("signature_info") or {}).get("issuer"),
        parameters=json.loads(json.dumps(created.get("parameters", {}))),
        problems=sorted({f.get("code", "") for f in failures}),
    )
