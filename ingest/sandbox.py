"""What a parser process may do: read the code and model it needs, and the document it is handed.

A parser reads hostile bytes with large C libraries (PDFium, libxml through python-docx); a bug there
must not become a way out. Each worker therefore, before it reads any task:

- runs in a network namespace of its own (no interface but a down loopback): no connection anywhere;
- is held by Landlock (Linux 5.13+): no file may be written, created, truncated or removed anywhere,
  and files may be opened for reading only under the Python installation, the import path and the
  embedding model's folder; documents arrive as already-open descriptors, so a worker never needs
  (and never gets) the document folders, the index, the users file or the secrets;
- sets no_new_privs, and then resource limits: address space, open files, file size 0, no new
  processes, CPU seconds, no core dumps;
- was started with a scrubbed environment (no tokens, proxies or credentials of the parent).

Where the kernel lacks a piece (no user namespaces in a container, Landlock not enabled), the worker
goes on without it and says so in its first line, and the parent logs a warning once: parsing still
works, the remaining limits still hold. docs/security.md lists what this does and does not stop.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

# Linux syscall numbers for Landlock (the same on x86_64 and aarch64: the generic table).
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000

# Filesystem rights (include/uapi/linux/landlock.h) and the ABI version that introduced each.
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_WRITE_RIGHTS_V1 = sum(1 << b for b in range(4, 13))  # remove dir/file, make char/dir/reg/sock/fifo/block/sym
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1

# Files outside the readable folders that the dynamic loader and the C library open.
_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/localtime", "/dev/null", "/dev/urandom",
                "/proc/self")


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # the kernel's struct landlock_path_beneath_attr is packed
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


@dataclass
class SandboxReport:
    """What the worker could put in place; sent to the parent in the worker's first line."""

    network: bool = False
    landlock: int = 0  # the Landlock ABI version in force, 0: none
    missing: list[str] = field(default_factory=list)


def scrubbed_environment(extra_path: list[str]) -> dict[str, str]:
    """The only variables a parser process gets: nothing the parent holds (tokens, proxies, secrets)."""
    return {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": os.pathsep.join(p for p in extra_path if p),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
    }


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _leave_network(report: SandboxReport) -> None:
    libc = _libc()
    # a new user namespace lets an unprivileged service user make the network namespace as well
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0 or libc.unshare(_CLONE_NEWNET) == 0:
        report.network = True
    else:
        report.missing.append(f"network namespace ({os.strerror(ctypes.get_errno())})")


def _readable_roots(model_folder: str, extra: Sequence[str] = ()) -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
             model_folder, *extra, *(p for p in sys.path if p), *_SYSTEM_READ}
    return sorted(r for r in roots if os.path.exists(r))


def _landlock(model_folder: str, extra: Sequence[str], report: SandboxReport) -> None:
    if platform.system() != "Linux":
        report.missing.append("Landlock (not Linux)")
        return
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    if abi < 1:
        report.missing.append(f"Landlock ({os.strerror(ctypes.get_errno())})")
        return
    read = _EXECUTE | _READ_FILE | _READ_DIR
    handled = read | _WRITE_FILE | _WRITE_RIGHTS_V1
    if abi >= 2:
        handled |= _REFER
    if abi >= 3:
        handled |= _TRUNCATE
    if abi >= 5:
        handled |= _IOCTL_DEV
    attr = _RulesetAttr(handled, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0,
                        _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        report.missing.append(f"Landlock ruleset ({os.strerror(ctypes.get_errno())})")
        return
    try:
        for root in _readable_roots(model_folder, extra):
            try:
                fd = os.open(root, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rights = read if os.path.isdir(root) else _EXECUTE | _READ_FILE
                rule = _PathBeneath(rights, fd)
                libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                             ctypes.byref(rule), ctypes.c_uint32(0))
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
                libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            report.missing.append(f"Landlock restriction ({os.strerror(ctypes.get_errno())})")
            return
        report.landlock = abi
    finally:
        os.close(ruleset)


def confine(model_folder: str, extra_read: Sequence[str] = ()) -> SandboxReport:
    """Leave the network and drop file-system rights (reads stay allowed under the code, the model folder
    and `extra_read`, e.g. OCR language files); call first, while the process has one thread (Landlock
    holds for the calling thread and the threads and processes it starts later)."""
    report = SandboxReport()
    _leave_network(report)
    _landlock(model_folder, extra_read, report)
    return report


def limit_resources(memory_bytes: int, cpu_seconds: int, open_files: int = 64) -> None:
    """Resource limits for the parsing that follows (after the tokenizer has started its threads)."""
    for limit, value in ((resource.RLIMIT_AS, memory_bytes), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_NOFILE, open_files),
                         (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_CPU, cpu_seconds)):
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):  # a hard limit already lower: it holds anyway
            pass
