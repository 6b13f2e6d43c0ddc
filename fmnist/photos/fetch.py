"""The http(s) client for photo and IIIF inputs: public hosts only, one deadline, a size cap, bounded caching.

Photo URLs and IIIF manifests come from strangers, so a fetch must not become a way to reach
the user's own network (server-side request forgery: cloud metadata at ``169.254.169.254``,
a router's admin page, a database on ``localhost``). Every hop -- the first request and each
redirect, which we follow ourselves -- resolves its host once, refuses any non-public address
unless the caller allows private hosts, and then connects to exactly the address it checked
(the ``Host`` header and TLS SNI/certificate check still use the name), so a DNS answer that
changes between check and connect cannot slip through.

One deadline covers the whole fetch (resolving aside): connecting, the TLS handshake, sending,
every read of the status line, the headers and the body, and every redirect. Each socket read
is given only the time left, so a server that trickles bytes cannot stretch it.

Known limits: name resolution uses the system resolver, which has its own timeouts and cannot
be interrupted; proxies from the environment (``http_proxy`` ...) are not used, because an
address check is only meaningful for a direct connection.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import select
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Sequence
from urllib.parse import quote, urljoin, urlsplit

from fmnist.errors import FmnistError, human_bytes

DEFAULT_TIMEOUT = 15.0  # seconds for a whole URL fetch: connect, headers, body and redirects
DEFAULT_MAX_BYTES = 25 * 2**20  # per download; phone photos are a few MB
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_CACHE_BYTES = 64 * 2**20  # downloads kept for reuse (several IIIF regions share one image)
USER_AGENT = "fmnist-photos/0.2 (+https://github.com/; http.client)"
ACCEPT = "image/*, application/json;q=0.9, */*;q=0.5"  # photos, or a IIIF manifest / annotation list
ALLOW_HINT = "pass --allow-private-hosts (allow_private=True in Python) to allow it"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 1 << 16

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(FmnistError):
    """A URL could not be fetched, or was refused; the message is one line."""


# ----------------------------------------------------------------------------- which addresses are public


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped ``::ffff:a.b.c.d``, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64 well-known prefix
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_problem(address: Address) -> str | None:
    """Why ``address`` is not a public internet address (``"a link-local address"`` ...), or ``None``.

    Anything Python's ``ipaddress`` does not call global is refused (that covers RFC 1918,
    shared CGNAT space, documentation and benchmark ranges); the common kinds are named.
    IPv6 forms of an IPv4 address are judged by that IPv4 address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            problem = address_problem(inner)
            return f"{problem[:-len(' address')]} IPv4 address ({inner}) in IPv6 form" if problem else None
    for attribute, kind in (("is_unspecified", "an unspecified"), ("is_loopback", "a loopback"),
                            ("is_link_local", "a link-local"), ("is_multicast", "a multicast"),
                            ("is_reserved", "a reserved"), ("is_private", "a private")):
        if getattr(address, attribute):
            return f"{kind} address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        return "a non-public address"
    return None


def resolve_host(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to, in the resolver's order (IP literals resolve to themselves).

    This is the one place names are resolved; tests replace it to map a public-looking name
    onto their loopback server.
    """
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve host {host} ({getattr(exc, 'strerror', None) or exc}).") from None
    addresses: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError(f"cannot resolve host {host} (no addresses).")
    return addresses


def checked_addresses(url: str, host: str, port: int, allow_private: bool, via: str | None = None) -> list[Address]:
    """The addresses to connect to for ``host``; refused when any of them is not public (unless allowed).

    All must pass, not just one: a name answering with a public and a private address could
    otherwise be steered onto the private one.
    """
    addresses = resolve_host(host, port)
    if allow_private:
        return addresses
    for address in addresses:
        problem = address_problem(address)
        if problem:
            what = f"to follow the redirect from {via} to {url}" if via else f"to fetch {url}"
            where = f"{host} resolves to {address}, {problem}" if str(address) != host else f"{address} is {problem}"
            raise FetchError(f"refused {what}: {where} (not on the public internet); {ALLOW_HINT}.")
    return addresses


# ----------------------------------------------------------------------------- a socket under a deadline


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


class _DeadlineReader(io.RawIOBase):
    """Raw reads from a socket, each allowed only the time left before the deadline."""

    def __init__(self, owner: _DeadlineSocket) -> None:
        super().__init__()
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 (a writable buffer)
        sock = self._owner.sock
        sock.settimeout(_remaining(self._owner.deadline))
        return sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._owner.release()
        super().close()


class _DeadlineSocket:
    """What ``http.client`` needs from a socket (``sendall``, ``makefile``, ``close``), deadline-bound.

    ``http.client`` reads the status line and headers with ``readline`` on ``makefile("rb")``;
    a plain socket timeout restarts on every byte, so a trickling server could hold us for
    ever. Here every underlying read and send gets only what is left of the overall deadline.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self._users = 1  # the connection; each reader adds one (http.client closes the connection first)

    def sendall(self, data: bytes) -> None:
        self.sock.settimeout(_remaining(self.deadline))  # since 3.5 the timeout bounds the whole sendall
        self.sock.sendall(data)

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:  # noqa: ANN002, ANN003
        self._users += 1
        return io.BufferedReader(_DeadlineReader(self))

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self.sock.close()

    def close(self) -> None:
        self.release()


def _tls_handshake(sock: socket.socket, host: str, deadline: float) -> ssl.SSLSocket:
    """TLS with certificate and host-name checks against ``host``, the handshake itself under the deadline."""
    context = ssl.create_default_context()
    tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    tls.setblocking(False)
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                ready = select.select([tls], [], [], _remaining(deadline))[0]
            except ssl.SSLWantWriteError:
                ready = select.select([], [tls], [], _remaining(deadline))[1]
            if not ready:
                raise TimeoutError
    except BaseException:
        tls.close()
        raise
    tls.setblocking(True)
    return tls


def open_socket(address: Address, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``address`` itself (no second name lookup); tests may replace it."""
    return socket.create_connection((str(address), port), timeout=timeout)


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to checked addresses, keeping the host name for ``Host`` and TLS."""

    def __init__(self, host: str, port: int, addresses: Sequence[Address], deadline: float, tls: bool) -> None:
        super().__init__(host, port)
        self._addresses = list(addresses)
        self._deadline = deadline
        self._tls = tls

    def connect(self) -> None:
        error: OSError | None = None
        for address in self._addresses:
            try:
                sock = open_socket(address, self.port, _remaining(self._deadline))
                break
            except TimeoutError:
                raise
            except OSError as exc:
                error = exc
        else:
            raise error or OSError("no address to connect to")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls:
                sock = _tls_handshake(sock, self.host, self._deadline)
        except BaseException:
            sock.close()
            raise
        self.sock = _DeadlineSocket(sock, self._deadline)


# ----------------------------------------------------------------------------- fetching


def _split(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, request target)``; bad URLs are a :class:`FetchError`."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(f"only http(s) URLs can be fetched, not {scheme}://.")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError) as exc:
        raise FetchError(f"malformed URL {url} ({exc}).") from None
    if not host:
        raise FetchError(f"URL {url} has no host.")
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~") + (
        "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?") if parts.query else "")
    return scheme, host, port, target


def _read_body(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    length = response.getheader("Content-Length")
    if length and length.strip().isdigit() and int(length) > max_bytes:
        raise FetchError(f"download is {human_bytes(int(length))}, over the {human_bytes(max_bytes)} size cap.")
    chunks, total = [], 0
    while True:
        chunk = response.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise FetchError(f"download exceeds the {human_bytes(max_bytes)} size cap; stopped.")
        chunks.append(chunk)


def fetch(url: str, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES, *,
          allow_private: bool = False, max_redirects: int = DEFAULT_MAX_REDIRECTS) -> bytes:
    """The body of ``url`` (http/https), within ``timeout`` seconds overall and ``max_bytes`` bytes.

    Redirects are followed here, at most ``max_redirects`` of them, each one's target checked
    like the first URL. Raises :class:`FetchError` with one sentence on any failure or refusal.
    """
    deadline = time.monotonic() + timeout
    current, previous = url, None
    for _hop in range(max_redirects + 1):
        scheme, host, port, target = _split(current)
        addresses = checked_addresses(current, host, port, allow_private, via=previous)
        connection = _PinnedConnection(host, port, addresses, deadline, tls=scheme == "https")
        try:
            connection.request("GET", target, headers={"User-Agent": USER_AGENT, "Accept": ACCEPT,
                                                       "Accept-Encoding": "identity", "Connection": "close"})
            response = connection.getresponse()
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"HTTP {response.status} redirect without a Location header.")
                following = urljoin(current, location.strip())
                if urlsplit(following).scheme.lower() not in ("http", "https"):
                    raise FetchError(f"redirected to a non-http(s) URL ({following}); refused.")
                previous, current = current, following
                continue
            if not 200 <= response.status < 300:
                raise FetchError(f"HTTP error {response.status} ({response.reason or 'no reason given'}).")
            return _read_body(response, max_bytes)
        except FetchError:
            raise
        except TimeoutError:  # socket.timeout is an alias since 3.10; also our own deadline
            raise FetchError(f"timed out after {timeout:g} s (one deadline for connecting, headers and body; "
                             f"raise it with --timeout).") from None
        except ssl.SSLCertVerificationError as exc:
            raise FetchError(f"TLS certificate of {host} not accepted ({exc.verify_message}).") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise FetchError(f"cannot fetch {current} ({type(exc).__name__}: {exc}).") from None
        finally:
            connection.close()
    raise FetchError(f"too many redirects (more than {max_redirects}) starting at {url}.")


# ----------------------------------------------------------------------------- a bounded cache


class BoundedCache:
    """Least-recently-used bytes, at most ``max_bytes`` in total (an item larger than that is not kept).

    Several IIIF regions usually crop one image; keeping recent downloads saves refetching
    without letting a long manifest or folder grow memory without bound.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        if key in self._items:
            self.total -= len(self._items.pop(key))
        if len(data) > self.max_bytes:
            return
        self._items[key] = data
        self.total += len(data)
        while self.total > self.max_bytes:
            self.total -= len(self._items.popitem(last=False)[1])

    def __len__(self) -> int:
        return len(self._items)
