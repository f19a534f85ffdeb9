"""C2PA manifests: signed at generation with the user's key, read and validated by `pixelforge verify`."""

import datetime
import json
import struct
import zlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pixelforge.cli import main
from pixelforge.generate.mark import payload_hex


def _name(cn):
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pixelforge test")]
    )


def _cert(subject, issuer, public_key, signing_key, ca: bool, issuer_key=None):
    now = datetime.datetime.now(datetime.UTC)
    usage = dict(
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage), critical=True)
    )
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    if not ca:  # C2PA wants an end-entity certificate fit for signing documents, naming its issuer's key
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False)
    return b.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    """A throwaway CA and signer certificate (P-256), written as PEM chain + key files."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert(_name("test root"), _name("test root"), ca_key.public_key(), ca_key, ca=True)
    leaf = _cert(
        _name("pixelforge signer"), ca.subject, key.public_key(), ca_key, ca=False, issuer_key=ca_key.public_key()
    )
    pem = serialization.Encoding.PEM
    (d / "chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (d / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(d / "chain.pem"), str(d / "key.pem")


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("c2pa")
    assert main(["import", "digits", "--out", str(root / "digits")]) == 0
    assert (
        main(
            [
                "train",
                "gan",
                "--data",
                str(root / "digits"),
                "--out",
                str(root / "run"),
                "--condition",
                "class",
                "--image-size",
                "8",
                "--max-steps",
                "1",
                "--batch-size",
                "16",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    return root / "run"


def _retext(png: bytes, old: bytes, new: bytes) -> bytes:
    """``png`` with a text chunk's bytes replaced (CRC recomputed): still a valid PNG, other bytes."""
    out, pos = bytearray(png[:8]), 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind in (b"tEXt", b"iTXt") and old in body:
            body = body.replace(old, new)
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        pos += 12 + length
    return bytes(out)


def test_signed_manifest_is_read_validated_and_broken_by_edits(gan_run, signing, tmp_path, capsys):
    chain, key = signing
    out = tmp_path / "gen"
    assert (
        main(
            [
                "generate",
                str(gan_run),
                "--class",
                "3",
                "--n",
                "2",
                "--out",
                str(out),
                "--mark-size",
                "0",
                "--c2pa-cert",
                chain,
                "--c2pa-key",
                key,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["verify", str(out / "images"), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 2
    for r in results:
        assert r["c2pa_found"] and r["c2pa_state"] == "Valid" and r["c2pa_ai_generated"]
        # valid signature and hashes; our throwaway CA is (rightly) not in any trust list
        assert r["c2pa_issuer"] == "pixelforge test" and r["c2pa_problems"] == ["signingCredential.untrusted"]
        assert r["c2pa_parameters"]["prompt"] == "3" and r["c2pa_parameters"]["model"] == "gan"
        assert r["c2pa_parameters"]["run_id"] == "run@step_0000001"
        # the manifest names the watermark and its payload: a stripped copy can be tied back by the mark
        assert r["c2pa_parameters"]["watermark"] == {"methods": ["tile"], "payload": payload_hex("run@step_0000001")}
        assert r["watermark_methods"] == []  # --mark-size 0 keeps the 8 px images: no room for a mark
        assert r["verdict"] == "generated by pixelforge"
    png = (out / "images" / "000000000.png").read_bytes()
    edited = tmp_path / "edited.png"
    edited.write_bytes(_retext(png, b"prompt\x00\x00\x00\x00\x003", b"prompt\x00\x00\x00\x00\x008"))  # a new prompt
    assert edited.read_bytes() != png
    assert main(["verify", str(edited), "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["c2pa_found"] and r["c2pa_state"] == "Invalid"
    assert any("mismatch" in code for code in r["c2pa_problems"])
    from PIL import Image

    resaved = tmp_path / "resaved.png"
    Image.open(out / "images" / "000000001.png").save(resaved)  # re-encoding drops the manifest
    assert main(["verify", str(resaved), "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert not r["c2pa_found"] and r["c2pa_state"] is None


def test_c2pa_flags_are_checked(gan_run, signing, tmp_path, capsys):
    chain, key = signing
    args = ["generate", str(gan_run), "--class", "3", "--out", str(tmp_path / "g")]
    assert main(args + ["--c2pa-cert", chain]) == 2
    assert "needs both --c2pa-cert (PEM chain) and --c2pa-key" in capsys.readouterr().err
    assert main(args + ["--c2pa-cert", chain, "--c2pa-key", chain]) == 2
    assert "--c2pa-key: not an unencrypted PEM private key" in capsys.readouterr().err
    assert main(args + ["--c2pa-cert", key, "--c2pa-key", key]) == 2
    assert "not a PEM certificate chain" in capsys.readouterr().err
