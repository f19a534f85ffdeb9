"""Refuse connections to loopback, private, link-local and multicast addresses (SSRF guard)."""

from __future__ import annotations

import ipaddress
from typing import Any

import aiohttp


class PrivateNetworkBlocked(aiohttp.ClientError):
    """Every address the host resolves to is in a blocked range."""


def is_blocked_address(address: str) -> bool:
    """True for loopback, private, link-local, multicast, reserved and unspecified addresses."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return True  # not an address we can judge: refuse rather than guess
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that drops blocked addresses after every DNS resolution.

    The check runs in the connector, so it applies to the first request and to every redirect
    hop alike, and to IP literals in URLs (aiohttp resolves those through the same method). A
    host with both public and private addresses is reached only on the public ones, which also
    defeats DNS answers that mix in an internal address.
    """

    def __init__(self, *args: Any, allow_private: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.allow_private = allow_private

    async def _resolve_host(self, host: str, port: int, traces=None):  # type: ignore[override]
        results = await super()._resolve_host(host, port, traces=traces)
        if self.allow_private:
            return results
        allowed = [r for r in results if not is_blocked_address(r["host"])]
        if not allowed:
            addrs = ", ".join(sorted({r["host"] for r in results}))
            raise PrivateNetworkBlocked(f"{host} resolves to a blocked address ({addrs})")
        return allowed
