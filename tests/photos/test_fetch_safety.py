"""Untrusted URLs and IIIF documents (issue 18): no request to a non-public host, one deadline, caps, streaming.

Every request goes to a loopback ``http.server`` this module starts and stops. Where a test needs
a *public* host that redirects somewhere private, the resolver is replaced so ``photos.example``
resolves to a public address and the connector carries that one address to the loopback server:
the address checks themselves run unchanged.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from test_photos import bag_photo, checkpoint, save, trousers_photo  # noqa: F401 (fixtures)

import fmnist.photos.fetch as fetch_module
import fmnist.photos.inputs as inputs_module
import fmnist.photos.stream as stream_module
from fmnist.commands.options.predict import build_parser
from fmnist.commands.shims import evaluate_py as main
from fmnist.data.sources import FASHION_CLASSES
from fmnist.errors import human_bytes
from fmnist.photos.fetch import BoundedCache, FetchError, address_problem, fetch, resolve_host
from fmnist.photos.fetch import _read_body as read_body
from fmnist.photos.fetch import _split as split_url
from fmnist.photos.iiif import manifest_sources, read_manifest
from fmnist.photos.iiif_json import MAX_JSON_DEPTH, IIIFError
from fmnist.photos.inputs import PhotoError, PhotoSource, expand_inputs, fetch_url, load_photo, read_bytes
from fmnist.photos.predict import classify
from fmnist.photos.stream import iter_loaded

PUBLIC = ip_address("93.184.215.14")  # a global unicast address; never contacted, the connector maps it
PNG_BYTES = io.BytesIO()
Image.new("RGB", (40, 40), (200, 30, 30)).save(PNG_BYTES, format="PNG")
PNG = PNG_BYTES.getvalue()


class _Handler(BaseHTTPRequestHandler):
    """Loopback endpoints; every slow loop is bounded and stops when the fixture does."""

    stopping = threading.Event()
    hosts: list[str] = []  # Host header of each request
    paths: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        port = self.server.server_address[1]
        type(self).hosts.append(self.headers.get("Host", ""))
        type(self).paths.append(self.path)
        if self.path.startswith("/img"):
            size = int(self.path.split("size=")[1]) if "size=" in self.path else 0
            body = PNG + b"\0" * size  # PIL ignores bytes after IEND: a big download that still decodes
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:  # the client stopped reading at its size cap
                return
        elif self.path.startswith("/chain/"):  # /chain/K: K redirects before the image
            hops = int(self.path.split("/")[2])
            self._redirect(f"/chain/{hops - 1}" if hops > 1 else "/img")
        elif self.path.startswith("/status/"):  # /status/CODE: that status, pointing at /img
            self.send_response(int(self.path.split("/")[2]))
            self.send_header("Location", "/img")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif self.path == "/to-localhost":
            self._redirect(f"http://localhost:{port}/img")
        elif self.path == "/to-private-v6":
            self._redirect(f"http://[::ffff:10.0.0.1]:{port}/img")
        elif self.path == "/to-public":
            self._redirect(f"http://photos.example:{port}/img")
        elif self.path == "/loop":
            self._redirect("/loop")
        elif self.path == "/trickle-headers":  # a status line and headers, one byte per 0.1 s (20 s in all)
            try:
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
                    if self.stopping.is_set():
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                return
        elif self.path == "/nested":
            body = b"[" * 100_000 + b"]" * 100_000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """The loopback server's port."""
    _Handler.stopping.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        _Handler.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def public_name(monkeypatch: pytest.MonkeyPatch, server: int) -> list[tuple[str, int]]:
    """``photos.example`` resolves to a public address; connecting to that address reaches the loopback server.

    Returns the list of ``(address, port)`` actually connected to. Connecting anywhere else fails
    the test, so nothing can reach 169.254.169.254 or a private network even by mistake.
    """
    real_resolve = fetch_module.resolve_host
    connected: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list:
        return [PUBLIC] if host == "photos.example" else real_resolve(host, port)

    def connect(address, port: int, timeout: float) -> socket.socket:  # noqa: ANN001
        connected.append((str(address), port))
        if address == PUBLIC:
            return socket.create_connection(("127.0.0.1", server), timeout=timeout)
        if address.is_loopback:  # allowed by an explicit allow_private=True
            return socket.create_connection((str(address), port), timeout=timeout)
        raise AssertionError(f"connected to {address}, which no test allows")

    monkeypatch.setattr(fetch_module, "resolve_host", resolve)
    monkeypatch.setattr(fetch_module, "open_socket", connect)
    _Handler.hosts.clear()
    return connected


# -- which addresses are refused --------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("169.254.169.254", "link-local"), ("0.0.0.0", "unspecified"),
    ("224.0.0.251", "multicast"), ("240.0.0.1", "reserved"), ("100.64.0.1", "non-public"),
    ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"), ("fd00::1", "private"),
    ("ff02::1", "multicast"), ("::ffff:127.0.0.1", "loopback IPv4"), ("::ffff:169.254.169.254", "link-local IPv4"),
    ("::ffff:10.0.0.1", "private IPv4"), ("2002:a9fe:a9fe::1", "link-local IPv4"), ("64:ff9b::a00:1", "private IPv4"),
    ("fec0::1", "site-local"), ("8.8.8.8", None), ("93.184.215.14", None), ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None),
])
def test_address_classification(address: str, kind: str | None) -> None:
    problem = address_problem(ip_address(address))
    assert (problem is None) if kind is None else (problem is not None and kind in problem)


def test_a_name_resolves_to_each_of_its_addresses_once_without_zone_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%eth0", 80, 0, 2)),
               (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 80)),
               (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 80))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
    assert resolve_host("photos.example", 80) == [ip_address("fe80::1"), PUBLIC]
    assert resolve_host("10.0.0.1", 80) == [ip_address("10.0.0.1")]  # a literal is not looked up
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: [])
    with pytest.raises(FetchError, match=r"^cannot resolve host photos\.example \(no addresses\)\.$"):
        resolve_host("photos.example", 80)


def test_a_name_that_does_not_resolve_is_one_sentence_with_the_resolvers_words(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(FetchError) as info:
        fetch("http://nowhere.example/a.jpg")
    assert str(info.value) == "cannot resolve host nowhere.example (Name or service not known)."


@pytest.mark.parametrize(("url", "expected"), [
    ("http://photos.example/a b.jpg?q=1 2", ("http", "photos.example", 80, "/a%20b.jpg?q=1%202")),
    ("https://photos.example", ("https", "photos.example", 443, "/")),
    ("HTTPS://Photos.Example:8443/x", ("https", "photos.example", 8443, "/x")),
    ("http://bücher.example/", ("http", "xn--bcher-kva.example", 80, "/")),
])
def test_a_url_splits_into_scheme_host_default_port_and_target(url: str, expected: tuple) -> None:
    assert split_url(url) == expected


def test_a_refused_connection_is_named_in_the_sentence(server: int) -> None:
    """Every address refused: the error says what the last attempt met, not a generic 'no address'."""
    with socket.socket() as probe:  # a port nothing listens on (bound, then released)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError, match=rf"^cannot fetch http://127\.0\.0\.1:{port}/a\.jpg \(ConnectionRefusedError"):
        fetch(f"http://127.0.0.1:{port}/a.jpg", allow_private=True)


def test_a_short_deadline_is_enough_for_a_fast_server(server: int) -> None:
    """The deadline runs out at zero seconds left, not at one (a 0.5 s budget fetches a loopback image)."""
    assert fetch(f"http://127.0.0.1:{server}/img", timeout=0.5, allow_private=True) == PNG


class _Response:
    """The two things _read_body asks of an HTTP response."""

    def __init__(self, body: bytes, length: str | None) -> None:
        self._body, self._length = io.BytesIO(body), length

    def getheader(self, name: str) -> str | None:
        return self._length if name == "Content-Length" else None

    def read1(self, n: int) -> bytes:
        return self._body.read(min(n, 7))  # small pieces: the running total is checked chunk by chunk


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_refused(declared: bool) -> None:
    def response(size: int) -> _Response:
        return _Response(b"x" * size, str(size) if declared else None)

    assert read_body(response(100), max_bytes=100) == b"x" * 100
    refusal = r"download is 101 bytes, over the 100 bytes size cap\." if declared else \
        r"download exceeds the 100 bytes size cap; stopped\."
    with pytest.raises(FetchError, match=rf"^{refusal}$"):
        read_body(response(101), max_bytes=100)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/img", "http://localhost:{port}/img", "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/a.jpg", "http://192.168.0.1/a.jpg", "http://[::1]:{port}/img", "http://[::ffff:127.0.0.1]/a.jpg",
    "http://0.0.0.0:{port}/img", "http://2130706433:{port}/img",  # 127.0.0.1 written as one number
])
def test_non_public_hosts_are_refused_without_the_flag(url: str, server: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    connected = []
    monkeypatch.setattr(fetch_module, "open_socket", lambda *args: connected.append(args))
    url = url.format(port=server)
    with pytest.raises(FetchError) as info:
        fetch(url, timeout=2)
    message = str(info.value)
    assert message.startswith(f"refused to fetch {url}: ") and "--allow-private-hosts" in message
    assert "\n" not in message and message.count(". ") == 0  # one sentence
    assert connected == []  # refused before any connection


def test_the_flag_allows_loopback_and_the_refusal_names_url_and_address(server: int) -> None:
    url = f"http://127.0.0.1:{server}/img"
    with pytest.raises(PhotoError, match=r"127\.0\.0\.1 is a loopback address \(not on the public internet\); "
                                         r"pass --allow-private-hosts"):
        fetch_url(url)
    assert fetch_url(url, allow_private=True) == PNG


def test_a_name_with_any_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "resolve_host", lambda host, port: [PUBLIC, ip_address("10.0.0.7")])
    monkeypatch.setattr(fetch_module, "open_socket", lambda *args: pytest.fail("must not connect"))
    with pytest.raises(FetchError, match=r"refused to fetch http://two\.example/a\.jpg: two\.example resolves to "
                                         r"10\.0\.0\.7, a private address"):
        fetch("http://two.example/a.jpg")


def test_redirects_are_checked_on_every_hop(server: int, public_name: list) -> None:
    base = f"http://photos.example:{server}"
    assert fetch(f"{base}/to-public") == PNG  # a public -> public redirect is followed
    assert _Handler.hosts[-2:] == [f"photos.example:{server}"] * 2  # Host header keeps the name, not the address
    for path, target, address in [("/to-metadata", "http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
                                  ("/to-localhost", f"http://localhost:{server}/img", "127.0.0.1"),
                                  ("/to-private-v6", f"http://[::ffff:10.0.0.1]:{server}/img", "::ffff:10.0.0.1")]:
        connected_before = len(public_name)
        with pytest.raises(FetchError) as info:
            fetch(base + path, timeout=2)
        message = str(info.value)
        assert message.startswith(f"refused to follow the redirect from {base}{path} to {target}: "), message
        assert address in message and "--allow-private-hosts" in message
        assert public_name[connected_before:] == [(str(PUBLIC), server)]  # only the first, public, hop connected
    with pytest.raises(FetchError, match="too many redirects"):
        fetch(f"{base}/loop", max_redirects=3)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_every_redirect_status_is_followed_through_the_checks(status: int, server: int, public_name: list) -> None:
    """RFC 9110's five redirects are followed (each hop checked: both hops connect to the pinned public address)."""
    assert fetch(f"http://photos.example:{server}/status/{status}") == PNG
    assert public_name == [(str(PUBLIC), server)] * 2


def test_every_connection_is_closed_once_the_fetch_is_done(server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long folder of URLs must not leak one socket per photo (or per redirect hop)."""
    opened: list[socket.socket] = []
    real_open = fetch_module.open_socket

    def recording(*args: object) -> socket.socket:
        opened.append(real_open(*args))
        return opened[-1]

    monkeypatch.setattr(fetch_module, "open_socket", recording)
    assert fetch(f"http://127.0.0.1:{server}/img", allow_private=True) == PNG
    assert fetch(f"http://127.0.0.1:{server}/chain/2", allow_private=True) == PNG
    with pytest.raises(FetchError):
        fetch(f"http://127.0.0.1:{server}/missing", allow_private=True)
    assert len(opened) == 5 and all(sock.fileno() == -1 for sock in opened)  # 1 + 3 hops + 1, each closed


@pytest.mark.parametrize("status", [300, 304, 305])
def test_a_status_that_is_not_a_redirect_is_not_followed(status: int, server: int, public_name: list) -> None:
    with pytest.raises(FetchError, match=rf"HTTP error {status} "):
        fetch(f"http://photos.example:{server}/status/{status}")
    assert public_name == [(str(PUBLIC), server)]


def test_the_documented_number_of_redirects_is_followed_and_one_more_is_refused(server: int) -> None:
    most = int(documented_default(r"Redirects are followed by the client itself \(at\s+most (\d+)\)"))
    assert fetch(f"http://127.0.0.1:{server}/chain/{most}", allow_private=True) == PNG
    with pytest.raises(FetchError, match=rf"too many redirects \(more than {most}\)"):
        fetch(f"http://127.0.0.1:{server}/chain/{most + 1}", allow_private=True)


@pytest.mark.parametrize(("size", "text"), [
    (0, "0 bytes"), (1023, "1023 bytes"), (1024, "1 KiB"), (1536, "2 KiB"), (10 * 1024, "10 KiB"),
    (2**20 - 1, "1024 KiB"), (2**20, "1.0 MiB"), (25 * 2**20, "25.0 MiB"), (25 * 2**20 + 52429, "25.1 MiB")])
def test_sizes_in_messages_are_written_in_the_unit_a_person_reads(size: int, text: str) -> None:
    """Worked by hand: bytes below 1 KiB, whole KiB below 1 MiB, MiB to one decimal above."""
    assert human_bytes(size) == text


def documented_default(pattern: str) -> float:
    """A default as docs/photos.md states it to users (the contract the code must keep)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "photos.md").read_text()
    found = re.search(pattern, text)
    assert found, f"docs/photos.md no longer states {pattern!r}"
    return float(found.group(1))


def test_the_documented_defaults_are_the_defaults() -> None:
    mib = 2**20
    timeout, max_bytes = documented_default(r"`--timeout`, default (\d+) s"), documented_default(
        r"`--max-bytes` per photo or download \(default (\d+) MiB")
    cache = documented_default(r"through a (\d+) MiB\s+least-recently-used cache")
    for function in (fetch, fetch_url, read_bytes, load_photo):
        parameters = inspect.signature(function).parameters
        assert parameters["timeout"].default == timeout and parameters["max_bytes"].default == max_bytes * mib
    assert BoundedCache().max_bytes == cache * mib
    predict_defaults = build_parser().parse_args(["ckpt", "x"])
    assert predict_defaults.timeout == timeout and predict_defaults.max_bytes == max_bytes * mib


def test_the_default_size_cap_takes_exactly_25_mib_and_refuses_one_byte_more(server: int) -> None:
    """The cap is a size, not a guess: a download of exactly the documented 25 MiB passes, one byte more does not."""
    cap = 25 * 2**20
    assert len(fetch(f"http://127.0.0.1:{server}/img?size={cap - len(PNG)}", allow_private=True)) == cap
    with pytest.raises(FetchError, match=r"25\.0 MiB"):
        fetch(f"http://127.0.0.1:{server}/img?size={cap - len(PNG) + 1}", allow_private=True)


def test_the_checked_address_is_the_one_connected_to(server: int, public_name: list,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a name that answers public, then private, is resolved once per hop and pinned."""
    answers = iter([[PUBLIC], [ip_address("127.0.0.1")]])
    monkeypatch.setattr(fetch_module, "resolve_host", lambda host, port: next(answers))
    assert fetch(f"http://rebind.example:{server}/img") == PNG
    assert public_name == [(str(PUBLIC), server)]
    assert next(answers) == [ip_address("127.0.0.1")]  # the second answer was never asked for


def test_a_private_annotation_list_in_a_manifest_is_refused(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "open_socket", lambda *args: pytest.fail("must not connect"))
    manifest = {"@context": "http://iiif.io/api/presentation/2/context.json", "@id": "m", "@type": "sc:Manifest",
                "sequences": [{"canvases": [{"@id": "c1", "@type": "sc:Canvas", "label": "one",
                                             "images": [{"resource": {"@id": "http://169.254.169.254/img.jpg"}}],
                                             "otherContent": [{"@id": "http://10.0.0.1/lists/l1.json"}]}]}]}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    read = read_manifest(str(path))
    [problem] = read.problems
    assert problem.name == "http://10.0.0.1/lists/l1.json" and "10.0.0.1 is a private address" in problem.message
    [source] = manifest_sources(read, FASHION_CLASSES)[0]
    with pytest.raises(PhotoError, match="169.254.169.254 is a link-local address"):
        fetch_url(source.location)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a test certificate")
def test_https_connects_to_the_checked_address_and_verifies_the_name(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=photos.example", "-addext", "subjectAltName=DNS:photos.example"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    default_context = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda: default_context(cafile=str(cert)))
    monkeypatch.setattr(fetch_module, "resolve_host", lambda host, port: [PUBLIC])
    connected = []

    def connect(address, port_: int, timeout: float) -> socket.socket:  # noqa: ANN001
        connected.append(str(address))
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)

    monkeypatch.setattr(fetch_module, "open_socket", connect)
    try:
        _Handler.hosts.clear()
        assert fetch(f"https://photos.example:{port}/img", timeout=5) == PNG
        assert connected == [str(PUBLIC)] and _Handler.hosts == [f"photos.example:{port}"]
        with pytest.raises(FetchError, match="TLS certificate of other.example not accepted"):
            fetch(f"https://other.example:{port}/img", timeout=5)  # same address, a name the certificate lacks
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# -- one deadline ----------------------------------------------------------------------------------------


def test_a_server_trickling_headers_cannot_hold_the_client(server: int) -> None:
    """Every byte comes within a per-read timeout; only the one deadline over the whole exchange stops it. Without
    that deadline the 20 s of headers would end in another error (or none), not in this message."""
    with pytest.raises(FetchError, match=r"timed out after 1 s") as info:
        fetch(f"http://127.0.0.1:{server}/trickle-headers", timeout=1.0, allow_private=True)
    assert "\n" not in str(info.value)


def test_a_silent_tls_server_cannot_hold_the_handshake() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        with pytest.raises(FetchError, match="timed out after 1 s"):  # a handshake without a deadline would hang
            fetch(f"https://127.0.0.1:{listener.getsockname()[1]}/a.jpg", timeout=1.0, allow_private=True)
    finally:
        thread.join(timeout=5)
        for sock in [*accepted, listener]:
            sock.close()


# -- caps ------------------------------------------------------------------------------------------------


def test_max_images_caps_folders_and_csvs_with_a_clear_warning(tmp_path: Path) -> None:
    for i in range(5):
        save(bag_photo(), tmp_path / "set" / f"p{i}.png")
    sources, problems = expand_inputs([str(tmp_path / "set")], FASHION_CLASSES, max_images=3)
    assert [s.name for s in sources] == ["p0.png", "p1.png", "p2.png"]  # the first 3 in sorted order
    [warning] = problems
    assert not warning.fatal and warning.message == ("holds 5 images; only the first 3 are used (2 skipped); "
                                                     "raise the cap with --max-images 5.")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\n" + "".join(f"set/p{i}.png,Bag\n" for i in range(5)))
    sources, problems = expand_inputs([str(labels)], FASHION_CLASSES, max_images=4)
    assert len(sources) == 4 and "holds 5 rows; only the first 4 are used (1 skipped)" in problems[0].message
    assert len(expand_inputs([str(tmp_path / "set")], FASHION_CLASSES, max_images=None)[0]) == 5


def test_max_images_caps_manifests_before_fetching_their_lists(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fetched = []
    monkeypatch.setattr(inputs_module, "fetch", lambda url, *a, **k: fetched.append(url) or b"{}")
    canvases = [{"@id": f"c{i}", "@type": "sc:Canvas", "label": f"c{i}",
                 "images": [{"resource": {"@id": f"img{i}.png"}}],
                 "otherContent": [{"@id": f"https://lists.example/l{i}.json"}]} for i in range(10)]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"@context": "http://iiif.io/api/presentation/2/context.json", "@id": "m",
                                "@type": "sc:Manifest", "sequences": [{"canvases": canvases}]}))
    manifest = read_manifest(str(path), max_images=4)
    assert [c.label for c in manifest.canvases] == ["c0", "c1", "c2", "c3"]
    assert fetched == [f"https://lists.example/l{i}.json" for i in range(4)]  # skipped canvases' lists not fetched
    cap = [p for p in manifest.problems if not p.fatal]
    assert len(cap) == 1 and "holds 10 canvases; only the first 4 are used (6 skipped)" in cap[0].message
    sources, problems = manifest_sources(manifest, FASHION_CLASSES, max_images=2)
    assert len(sources) == 2 and any("(2 skipped); raise the cap with --max-images 4" in p.message for p in problems)


# -- hostile JSON ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deeply_nested_json_is_one_sentence(depth: int, tmp_path: Path) -> None:
    path = tmp_path / "nested.json"
    path.write_text("[" * depth + "]" * depth)
    with pytest.raises(IIIFError, match=f"nested more than {MAX_JSON_DEPTH} levels deep") as info:
        read_manifest(str(path))
    assert "\n" not in str(info.value)


def test_json_size_and_integer_bombs_are_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"@type": "sc:Manifest", "pad": "x" * 5000}))
    with pytest.raises(IIIFError, match="size cap.*--max-json-bytes"):
        read_manifest(str(path), max_json_bytes=4096)
    path.write_text('{"width": ' + "9" * 50_000 + "}")  # Python refuses int strings over 4,300 digits
    with pytest.raises(IIIFError, match="not valid JSON"):
        read_manifest(str(path))


def test_predict_on_hostile_json_and_private_urls_gives_one_line_each(checkpoint: Path, server: int,  # noqa: F811
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    argv = ["predict", str(checkpoint), str(nested), f"http://127.0.0.1:{server}/img", "--out", str(tmp_path / "o")]
    assert main(argv) == 2  # nothing usable
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RecursionError" not in err
    assert f"{nested}: JSON is nested more than {MAX_JSON_DEPTH} levels deep" in err
    assert "img: refused to fetch" in err and "--allow-private-hosts" in err
    assert not (tmp_path / "o").exists()  # nothing written for nothing predicted

    argv = ["predict", str(checkpoint), f"http://127.0.0.1:{server}/nested", f"http://127.0.0.1:{server}/img",
            "--allow-private-hosts", "--out", str(tmp_path / "o")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "nested: JSON is nested more than" in err and "Traceback" not in err


# -- streaming -------------------------------------------------------------------------------------------


def _args(**overrides: object) -> SimpleNamespace:
    defaults = vars(build_parser().parse_args(["ckpt", "x"]))
    return SimpleNamespace(**{**defaults, **overrides})


def test_sources_are_consumed_lazily_and_downloads_share_a_bounded_cache(server: int) -> None:
    pulled = []

    def sources() -> Iterator[PhotoSource]:
        for i in range(8):
            pulled.append(i)
            yield PhotoSource(f"http://127.0.0.1:{server}/img?n={i // 2}&size=300000", f"p{i}")  # pairs share a URL

    cache = BoundedCache(max_bytes=700_000)  # two of the 300 KB downloads
    problems = []
    results = iter_loaded(sources(), FASHION_CLASSES, _args(allow_private_hosts=True), [], problems.append, cache)
    first = next(results)
    assert first.source.name == "p0" and pulled == [0]  # one source read, one photo made
    _Handler.paths.clear()
    rest = list(results)
    # Warnings about a blank synthetic image (no garment found) are fine; nothing may fail.
    assert [r.source.name for r in rest] == [f"p{i}" for i in range(1, 8)] and not [p for p in problems if p.fatal]
    assert len(_Handler.paths) == 3  # p1 reused p0's download; p2..p7 needed 3 more
    assert cache.total <= 700_000 and len(cache) == 2
    assert all(r.input.pixels.shape == (28, 28) for r in rest)  # only the model input is kept per photo


def test_bounded_cache_evicts_least_recently_used() -> None:
    cache = BoundedCache(max_bytes=10)
    cache.put("a", b"1234")
    cache.put("b", b"5678")
    assert cache.get("a") == b"1234"  # a is now the most recent
    cache.put("c", b"90ab")
    assert cache.get("b") is None and cache.get("a") and cache.get("c") and cache.total == 8
    cache.put("huge", b"x" * 11)
    assert cache.get("huge") is None and cache.total == 8


def test_classify_predicts_batch_by_batch() -> None:
    seen = []

    class Model:
        def predict_proba(self, pixels: torch.Tensor) -> torch.Tensor:
            seen.append(len(pixels))
            return torch.full((len(pixels), 10), 0.1)

    def results() -> Iterator[SimpleNamespace]:
        for i in range(5):
            yield SimpleNamespace(input=SimpleNamespace(pixels=np.zeros((28, 28), np.uint8)), i=i, probs=None)

    stream = classify(results(), [Model()], batch_size=2)
    assert next(stream).probs is not None and seen == [2]  # first answer after the first batch, not the last
    assert len(list(stream)) == 4 and seen == [2, 2, 1]


def test_predict_writes_predictions_as_it_goes_and_caps_folders(checkpoint: Path, tmp_path: Path,  # noqa: F811
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    for i in range(45):
        save(trousers_photo(size=(60, 80)) if i % 2 else bag_photo(), tmp_path / "set" / f"p{i:02d}.png")
    out = tmp_path / "out"
    rows_on_disk = []
    decode = stream_module.decode_image

    def watching_decode(data: bytes, *args: object) -> Image.Image:
        csv_path = out / "predictions.csv"
        rows_on_disk.append(len(csv_path.read_text().splitlines()) - 1 if csv_path.exists() else 0)
        return decode(data, *args)

    monkeypatch.setattr(stream_module, "decode_image", watching_decode)
    assert main(["predict", str(checkpoint), str(tmp_path / "set"), "--max-images", "40", "--out", str(out)]) == 0
    assert len(rows_on_disk) == 40
    assert rows_on_disk[32:] == [32] * 8  # the first batch was on disk while the rest was still being read
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 40 and rows[-1]["file"].endswith("p39.png") and Path(rows[-1]["input_png"]).is_file()
    assert len(list((out / "inputs").glob("*.png"))) == 40
    err = capsys.readouterr().err
    assert f"{tmp_path / 'set'}: warning: holds 45 images; only the first 40 are used (5 skipped); " \
           f"raise the cap with --max-images 45." in err
