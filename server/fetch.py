"""Fetching an image URL without becoming a proxy into the local network (SSRF).

Rules: http and https only; the host name is resolved once and EVERY address it resolves to must
be globally routable (no loopback, private, link-local, shared, multicast, reserved or unspecified
ranges, IPv4 or IPv6, including IPv4-mapped/NAT64/6to4 forms); the connection then goes to those
checked addresses only (a pinned resolver, so a second DNS answer cannot rebind it). Redirects are
followed by hand, at most 5, each one checked again. Odd spellings such as ``0x7f000001`` or
``2130706433`` are resolved by the system resolver exactly as a connection would be, and the
result is checked, so they cannot slip past. The body is capped at the upload limit; connect and
read have timeouts.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from server.errors import ApiError, InvalidParams, PayloadTooLarge
from server.uploads import StoredUpload, write_capped

MAX_REDIRECTS = 5
_CHUNK = 256 * 1024


class UrlRefused(InvalidParams):
    code = "URL_NOT_ALLOWED"


class FetchFailed(ApiError):
    status, code = 422, "URL_FETCH_FAILED"


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int
    allow_private: bool = False
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 20.0
    total_timeout_s: float = 60.0


def address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> bool:
    embedded = _embedded_ipv4(ip)
    if embedded is not None and not address_allowed(embedded, allow_private):
        return False
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    if allow_private:
        return True
    return ip.is_global and not ip.is_loopback and not ip.is_link_local


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


async def resolve_checked(host: str, port: int, allow_private: bool, what: str = "image URL") -> list[str]:
    """Resolve ``host`` and return its addresses, refusing if any one of them is not allowed.
    ``what`` names the URL in messages (webhooks use these rules too)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchFailed(f"The {what}'s host '{host}' could not be resolved ({exc.strerror}).") from None
    addresses = sorted({info[4][0] for info in infos})
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not address_allowed(ip, allow_private):
            raise UrlRefused(f"The {what} points to a non-public address ({ip}); it is not fetched.")
    return addresses


class PinnedResolver(AbstractResolver):
    """Answers only with addresses that were already checked for this host."""

    def __init__(self, host: str, addresses: list[str]):
        self._host, self._addresses = host, addresses

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        if host != self._host:
            raise OSError(f"unexpected host {host}")
        return [{"hostname": host, "host": a, "port": port, "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for a in self._addresses]

    async def close(self) -> None:
        return None


def split_url(url: str, what: str = "image URL") -> tuple[str, str, int]:
    """Scheme, host and port of an http(s) URL without credentials; refused otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"Only http and https {what}s are fetched.")
    if not parts.hostname or parts.username or parts.password:
        raise UrlRefused(f"The {what} needs a host name and must not carry credentials.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UrlRefused(f"The {what} has an invalid port.") from None
    return parts.scheme, parts.hostname, port


async def fetch_image(url: str, tmp_dir: Path, policy: FetchPolicy) -> StoredUpload:
    """Download ``url`` into a temporary file under ``tmp_dir``; the caller sniffs the bytes."""
    for _ in range(MAX_REDIRECTS + 1):
        _, host, port = split_url(url)
        addresses = await resolve_checked(host, port, policy.allow_private)
        location = await _get_once(url, host, addresses, tmp_dir, policy)
        if isinstance(location, StoredUpload):
            return location
        url = urljoin(url, location)
    raise FetchFailed(f"The image URL redirected more than {MAX_REDIRECTS} times.")


async def _get_once(url: str, host: str, addresses: list[str], tmp_dir: Path,
                    policy: FetchPolicy) -> StoredUpload | str:
    timeout = aiohttp.ClientTimeout(total=policy.total_timeout_s, sock_connect=policy.connect_timeout_s,
                                    sock_read=policy.read_timeout_s)
    connector = aiohttp.TCPConnector(resolver=PinnedResolver(host, addresses), use_dns_cache=False)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
            async with session.get(url, allow_redirects=False, headers={"Accept": "image/*"}) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    return resp.headers["Location"]
                if resp.status != 200:
                    raise FetchFailed(f"The image URL answered HTTP {resp.status}.")
                return await _save_body(resp, url, tmp_dir, policy.max_bytes)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise FetchFailed(f"The image URL could not be fetched: {type(exc).__name__} {exc}".strip()) from None


async def _save_body(resp: aiohttp.ClientResponse, url: str, tmp_dir: Path, max_bytes: int) -> StoredUpload:
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise _too_large(max_bytes)
    path, size = await write_capped(resp.content.iter_chunked(_CHUNK), tmp_dir, max_bytes, _too_large)
    name = urlsplit(url).path.rsplit("/", 1)[-1] or "image"
    return StoredUpload(path=path, filename=name, size=size)


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The image at the URL is larger than the limit of {max_bytes // (1024 * 1024)} MB.",
                           code="UPLOAD_TOO_LARGE", limitBytes=max_bytes)
