"""Thin ctypes binding to the system libsrt (Haivision SRT, 1.4.2 or later).

Only what the listener needs: library start/stop, sockets and their
options, bind/listen/accept with the listen callback, SRT epoll, message
receive, close and error strings (plus connect/send, used by tests as a
caller). Every call that fails raises :class:`SRTError` with libsrt's error
code and text; a missing library raises :class:`SRTUnavailable`.

All functions are called through :class:`ctypes.CDLL`, so the GIL is
released during each libsrt call: a libsrt thread running a Python listen
callback can never deadlock against a Python thread waiting in libsrt.

libsrt keeps a reference count for ``srt_startup``/``srt_cleanup``: each
user calls :meth:`LibSRT.startup` once and :meth:`LibSRT.cleanup` once.

Library lookup order: an explicit path, then the OpenSSL flavour
(Debian ``libsrt1.5-openssl`` ships ``libsrt.so.1.5``), then the GnuTLS
flavour (``libsrt-gnutls.so.1.5``); they have the same API.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import socket
import threading
from collections.abc import Callable
from typing import Final

__all__ = [
    "LibSRT",
    "ListenHook",
    "SRTError",
    "SRTUnavailable",
    "load",
]

# SRT_SOCKOPT values (srt.h, stable since 1.3)
SRTO_RCVSYN: Final = 2
SRTO_SNDSYN: Final = 1
SRTO_RCVBUF: Final = 6
SRTO_LINGER: Final = 7
SRTO_LATENCY: Final = 23
SRTO_PASSPHRASE: Final = 26
SRTO_PBKEYLEN: Final = 27
SRTO_KMSTATE: Final = 28
SRTO_CONNTIMEO: Final = 36
SRTO_PEERLATENCY: Final = 44
SRTO_RCVLATENCY: Final = 43
SRTO_STREAMID: Final = 46
SRTO_PAYLOADSIZE: Final = 49
SRTO_TRANSTYPE: Final = 50
SRTO_PEERIDLETIMEO: Final = 55

SRTT_LIVE: Final = 0

SRT_EPOLL_IN: Final = 0x1
SRT_EPOLL_OUT: Final = 0x4
SRT_EPOLL_ERR: Final = 0x8

# SRT_SOCKSTATUS
SRTS_CONNECTED: Final = 5
SRTS_BROKEN: Final = 6
SRTS_CLOSED: Final = 8
SRTS_NONEXIST: Final = 9

# SRT_ERRNO
SRT_ECONNREJ: Final = 1002
SRT_ECONNLOST: Final = 2001
SRT_ENOCONN: Final = 2002
SRT_EINVSOCK: Final = 5004
SRT_EASYNCRCV: Final = 6002
SRT_ETIMEOUT: Final = 6003

LOG_CRIT: Final = 2
LOG_ERR: Final = 3

SRT_LIVE_MAX_PAYLOAD: Final = 1456
"""Largest message of a live-mode connection, in bytes."""

SRT_INVALID_SOCK: Final = -1
SRT_ERROR: Final = -1

_CANDIDATES = (
    "srt-openssl",
    "libsrt-openssl.so.1.5",
    "srt",
    "libsrt.so.1.5",
    "libsrt.so.1",
    "srt-gnutls",
    "libsrt-gnutls.so.1.5",
)

ListenHook = Callable[[int, int, str, bytes], int]
"""Python listen callback: ``(new_socket, hs_version, peer, stream_id) -> 0 | -1``."""

_LISTEN_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
)


class SRTUnavailable(RuntimeError):
    """libsrt could not be loaded (not installed, or too old)."""


class SRTError(OSError):
    """A libsrt call failed; ``code`` is the SRT_ERRNO value."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code


class _EpollEvent(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_int)]


class _SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_ushort),
        ("port", ctypes.c_ubyte * 2),
        ("addr", ctypes.c_ubyte * 4),
        ("zero", ctypes.c_ubyte * 8),
    ]


class _SockaddrIn6(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_ushort),
        ("port", ctypes.c_ubyte * 2),
        ("flowinfo", ctypes.c_uint32),
        ("addr", ctypes.c_ubyte * 16),
        ("scope_id", ctypes.c_uint32),
    ]


_SOCKADDR_STORAGE = 128


def _sockaddr(host: str, port: int) -> tuple[ctypes.Structure, int]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SRTError(0, f"not an IP address: {host!r}") from None
    if not 0 <= port <= 0xFFFF:
        raise SRTError(0, f"port out of range: {port}")
    if ip.version == 4:
        sin = _SockaddrIn()
        sin.family = socket.AF_INET
        sin.port[:] = list(port.to_bytes(2, "big"))
        sin.addr[:] = list(ip.packed)
        return sin, ctypes.sizeof(sin)
    sin6 = _SockaddrIn6()
    sin6.family = socket.AF_INET6
    sin6.port[:] = list(port.to_bytes(2, "big"))
    sin6.addr[:] = list(ip.packed)
    return sin6, ctypes.sizeof(sin6)


def sockaddr_to_text(ptr: int | None) -> str:
    """``host:port`` of a ``struct sockaddr*`` (IPv4/IPv6), ``"?"`` if unknown."""
    if not ptr:
        return "?"
    family = ctypes.c_ushort.from_address(ptr).value
    if family == socket.AF_INET:
        sin = _SockaddrIn.from_address(ptr)
        return f"{ipaddress.IPv4Address(bytes(sin.addr))}:{int.from_bytes(bytes(sin.port), 'big')}"
    if family == socket.AF_INET6:
        sin6 = _SockaddrIn6.from_address(ptr)
        return f"[{ipaddress.IPv6Address(bytes(sin6.addr))}]:{int.from_bytes(bytes(sin6.port), 'big')}"
    return "?"


class LibSRT:
    """The loaded library with typed wrappers. Use :func:`load` to get one."""

    def __init__(self, cdll: ctypes.CDLL, name: str) -> None:
        self.name = name
        self._lib = lib = cdll
        c_int, c_void_p, c_char_p = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
        int_p = ctypes.POINTER(c_int)
        signatures: dict[str, tuple[list[object], object]] = {
            "srt_startup": ([], c_int),
            "srt_cleanup": ([], c_int),
            "srt_getversion": ([], ctypes.c_uint32),
            "srt_create_socket": ([], c_int),
            "srt_bind": ([c_int, c_void_p, c_int], c_int),
            "srt_bind_acquire": ([c_int, c_int], c_int),
            "srt_listen": ([c_int, c_int], c_int),
            "srt_accept": ([c_int, c_void_p, int_p], c_int),
            "srt_listen_callback": ([c_int, _LISTEN_CALLBACK, c_void_p], c_int),
            "srt_connect": ([c_int, c_void_p, c_int], c_int),
            "srt_close": ([c_int], c_int),
            "srt_getsockname": ([c_int, c_void_p, int_p], c_int),
            "srt_getsockflag": ([c_int, c_int, c_void_p, int_p], c_int),
            "srt_setsockflag": ([c_int, c_int, c_void_p, c_int], c_int),
            "srt_getsockstate": ([c_int], c_int),
            "srt_recvmsg": ([c_int, c_void_p, c_int], c_int),
            "srt_sendmsg": ([c_int, c_char_p, c_int, c_int, c_int], c_int),
            "srt_getlasterror": ([int_p], c_int),
            "srt_getlasterror_str": ([], c_char_p),
            "srt_epoll_create": ([], c_int),
            "srt_epoll_add_usock": ([c_int, c_int, int_p], c_int),
            "srt_epoll_remove_usock": ([c_int, c_int], c_int),
            "srt_epoll_uwait": ([c_int, ctypes.POINTER(_EpollEvent), c_int, ctypes.c_int64], c_int),
            "srt_epoll_release": ([c_int], c_int),
            "srt_getrejectreason": ([c_int], c_int),
            "srt_setloglevel": ([c_int], None),
        }
        for fname, (argtypes, restype) in signatures.items():
            try:
                fn = getattr(lib, fname)
            except AttributeError:
                raise SRTUnavailable(f"{name} has no {fname}: libsrt 1.4.2 or later is needed") from None
            fn.argtypes = argtypes
            fn.restype = restype
        self._has_setrejectreason = hasattr(lib, "srt_setrejectreason")
        if self._has_setrejectreason:
            lib.srt_setrejectreason.argtypes = [c_int, c_int]
            lib.srt_setrejectreason.restype = c_int

    # -- diagnostics --------------------------------------------------------

    @property
    def version(self) -> str:
        """Library version, e.g. ``"1.5.1"``."""
        v = self._lib.srt_getversion()
        return f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"

    def last_error(self) -> SRTError:
        """The calling thread's last libsrt error as an exception object."""
        code = self._lib.srt_getlasterror(None)
        text = self._lib.srt_getlasterror_str() or b""
        return SRTError(code, text.decode("utf-8", "replace"))

    def _check(self, result: int) -> int:
        if result == SRT_ERROR:
            raise self.last_error()
        return result

    # -- library ------------------------------------------------------------

    def startup(self) -> None:
        """``srt_startup`` (reference counted by libsrt)."""
        if self._lib.srt_startup() < 0:
            raise self.last_error()

    def set_log_level(self, level: int) -> None:
        """``srt_setloglevel`` (syslog levels: 2 critical, 3 error, 4 warning...); process-wide."""
        self._lib.srt_setloglevel(level)

    def cleanup(self) -> None:
        """``srt_cleanup``: release one :meth:`startup`."""
        self._lib.srt_cleanup()

    # -- sockets ------------------------------------------------------------

    def create_socket(self) -> int:
        sock = self._lib.srt_create_socket()
        if sock == SRT_INVALID_SOCK:
            raise self.last_error()
        return sock

    def close(self, sock: int) -> None:
        """``srt_close``; errors (already closed) are ignored."""
        self._lib.srt_close(sock)

    def state(self, sock: int) -> int:
        """``srt_getsockstate`` (an ``SRTS_*`` value)."""
        return self._lib.srt_getsockstate(sock)

    def set_int(self, sock: int, opt: int, value: int) -> None:
        v = ctypes.c_int32(value)
        self._check(self._lib.srt_setsockflag(sock, opt, ctypes.byref(v), ctypes.sizeof(v)))

    def set_bool(self, sock: int, opt: int, value: bool) -> None:
        v = ctypes.c_bool(value)
        self._check(self._lib.srt_setsockflag(sock, opt, ctypes.byref(v), ctypes.sizeof(v)))

    def set_str(self, sock: int, opt: int, value: str) -> None:
        raw = value.encode("utf-8")
        buf = ctypes.create_string_buffer(raw, len(raw) + 1)
        self._check(self._lib.srt_setsockflag(sock, opt, buf, len(raw)))

    def get_int(self, sock: int, opt: int) -> int:
        v = ctypes.c_int32()
        n = ctypes.c_int(ctypes.sizeof(v))
        self._check(self._lib.srt_getsockflag(sock, opt, ctypes.byref(v), ctypes.byref(n)))
        return v.value

    def get_bytes(self, sock: int, opt: int, size: int = 513) -> bytes:
        buf = ctypes.create_string_buffer(size)
        n = ctypes.c_int(size)
        self._check(self._lib.srt_getsockflag(sock, opt, buf, ctypes.byref(n)))
        return buf.raw[: max(0, min(n.value, size))].split(b"\0", 1)[0]

    def bind(self, sock: int, host: str, port: int) -> None:
        addr, size = _sockaddr(host, port)
        self._check(self._lib.srt_bind(sock, ctypes.byref(addr), size))

    def bind_acquire(self, sock: int, udp_fd: int) -> None:
        """``srt_bind_acquire``: bind ``sock`` to an already bound UDP socket, which libsrt
        then owns (and closes with the last SRT socket on it)."""
        self._check(self._lib.srt_bind_acquire(sock, udp_fd))

    def local_port(self, sock: int) -> int:
        buf = ctypes.create_string_buffer(_SOCKADDR_STORAGE)
        n = ctypes.c_int(_SOCKADDR_STORAGE)
        self._check(self._lib.srt_getsockname(sock, buf, ctypes.byref(n)))
        return int.from_bytes(buf.raw[2:4], "big")

    def listen(self, sock: int, backlog: int) -> None:
        self._check(self._lib.srt_listen(sock, backlog))

    def set_listen_callback(self, sock: int, hook: ListenHook) -> object:
        """Install ``hook`` as the listen callback of ``sock``.

        The hook runs on a libsrt thread during the handshake, before the
        connection is accepted; returning -1 rejects it. Exceptions in the
        hook reject the connection. The returned object is the C callback:
        the caller must keep it referenced until ``sock`` is closed.
        """

        def trampoline(
            _opaque: int | None, ns: int, hs_version: int, peer: int | None, stream_id: bytes | None
        ) -> int:
            try:
                return 0 if hook(ns, hs_version, sockaddr_to_text(peer), stream_id or b"") == 0 else -1
            except BaseException:  # noqa: BLE001 - never let an exception cross into C
                return -1

        callback = _LISTEN_CALLBACK(trampoline)
        self._check(self._lib.srt_listen_callback(sock, callback, None))
        return callback

    def set_reject_reason(self, sock: int, code: int) -> bool:
        """``srt_setrejectreason`` where available; False when the library lacks it."""
        if not self._has_setrejectreason:
            return False
        return self._lib.srt_setrejectreason(sock, code) == 0

    def reject_reason(self, sock: int) -> int:
        return self._lib.srt_getrejectreason(sock)

    def accept(self, sock: int) -> tuple[int, str] | None:
        """Accept one pending connection: ``(socket, peer)``, or None when none is pending."""
        buf = ctypes.create_string_buffer(_SOCKADDR_STORAGE)
        n = ctypes.c_int(_SOCKADDR_STORAGE)
        new = self._lib.srt_accept(sock, buf, ctypes.byref(n))
        if new == SRT_INVALID_SOCK:
            err = self.last_error()
            if err.code == SRT_EASYNCRCV:
                return None
            raise err
        return new, sockaddr_to_text(ctypes.addressof(buf))

    def connect(self, sock: int, host: str, port: int) -> None:
        """``srt_connect`` (blocking unless SRTO_RCVSYN is off). Used by tests as a caller."""
        addr, size = _sockaddr(host, port)
        self._check(self._lib.srt_connect(sock, ctypes.byref(addr), size))

    def send(self, sock: int, data: bytes) -> int:
        """``srt_sendmsg`` of one message (at most :data:`SRT_LIVE_MAX_PAYLOAD` bytes in live mode)."""
        return self._check(self._lib.srt_sendmsg(sock, data, len(data), -1, 0))

    def recv_into(self, sock: int, buf: ctypes.Array[ctypes.c_char]) -> int | None:
        """Receive one message into ``buf``: its size, or None when nothing is ready.

        Raises :class:`SRTError` when the connection is broken or closed.
        """
        n = self._lib.srt_recvmsg(sock, buf, len(buf))
        if n == SRT_ERROR:
            err = self.last_error()
            if err.code == SRT_EASYNCRCV:
                return None
            raise err
        return n

    # -- epoll --------------------------------------------------------------

    def epoll_create(self) -> int:
        return self._check(self._lib.srt_epoll_create())

    def epoll_add(self, eid: int, sock: int, events: int) -> None:
        ev = ctypes.c_int(events)
        self._check(self._lib.srt_epoll_add_usock(eid, sock, ctypes.byref(ev)))

    def epoll_remove(self, eid: int, sock: int) -> None:
        self._lib.srt_epoll_remove_usock(eid, sock)

    def epoll_release(self, eid: int) -> None:
        self._lib.srt_epoll_release(eid)

    def epoll_wait(self, eid: int, events: ctypes.Array[_EpollEvent], timeout_ms: int) -> list[tuple[int, int]]:
        """``srt_epoll_uwait``: ``[(socket, SRT_EPOLL_* flags)]``, empty on timeout."""
        n = self._lib.srt_epoll_uwait(eid, events, len(events), timeout_ms)
        if n == SRT_ERROR:
            err = self.last_error()
            if err.code == SRT_ETIMEOUT:
                return []
            raise err
        return [(events[i].fd, events[i].events) for i in range(min(n, len(events)))]

    @staticmethod
    def event_array(size: int) -> ctypes.Array[_EpollEvent]:
        """A buffer for :meth:`epoll_wait`."""
        return (_EpollEvent * size)()


_loaded: dict[str | None, LibSRT] = {}
_load_lock = threading.Lock()


def load(path: str | None = None) -> LibSRT:
    """Load libsrt (``path``, or the first system library found) once per path.

    Raises :class:`SRTUnavailable` with what was tried when nothing loads.
    """
    with _load_lock:
        if path in _loaded:
            return _loaded[path]
        tried: list[str] = []
        names = [path] if path else []
        if not path:
            for candidate in _CANDIDATES:
                found = ctypes.util.find_library(candidate) if "." not in candidate else candidate
                if found and found not in names:
                    names.append(found)
        for name in names:
            try:
                cdll = ctypes.CDLL(name)
            except OSError as exc:
                tried.append(f"{name}: {exc}")
                continue
            lib = LibSRT(cdll, name)
            _loaded[path] = lib
            return lib
        detail = "; ".join(tried) or "no candidate found"
        raise SRTUnavailable(
            "libsrt is not available (install the Debian package libsrt1.5-openssl): " + detail
        )
