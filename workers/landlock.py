"""The kernel's own file rules for a sandbox: Landlock (Linux 5.13 and later, no privileges needed).

The audit hook sees what Python opens; C code (``numpy.fromfile``, ``ndarray.tofile``,
``torch.from_file``) opens files without it. Landlock makes the kernel refuse those too: once
``restrict`` returns True, this process (and any child) may only

- read, write, create and delete in its own directory;
- read (and map as code) in the readable folders, minus the server's private files: a folder that
  holds one is opened up entry by entry, leaving those out (fail-closed: what appears there later
  stays out of reach);
- read its own ``/proc`` entries and the few system-wide ones libraries read, and use the null,
  zero and random devices and the GPUs' device files.

Where the kernel has no Landlock (older, or disabled), ``restrict`` returns False and the audit
hook is the only file rule.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Iterable

__all__ = ["restrict"]

# the three system calls have the same numbers on every architecture (asm-generic)
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FILE_ONLY_V1 = EXECUTE | WRITE_FILE | READ_FILE
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
READ = EXECUTE | READ_FILE | READ_DIR

#: system-wide ``/proc`` entries that libraries read (CPU count, memory, limits)
_PROC = ("/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/sys", "/proc/driver")
_DEVICES_RW = ("/dev/null", "/dev/zero", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia[0-9]*")
_DEVICES_R = ("/dev/urandom", "/dev/random")


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def _without(roots: Iterable[str], private: tuple[str, ...]) -> list[str]:
    """``roots`` with the private paths carved out: a root that holds one becomes its entries."""
    kept: list[str] = []
    for root in roots:
        inside = tuple(p for p in private if p == root or p.startswith(root.rstrip(os.sep) + os.sep))
        if not inside:
            kept.append(root)
        elif root not in inside and os.path.isdir(root):
            try:
                names = os.listdir(root)
            except OSError:
                continue
            kept += _without((os.path.join(root, name) for name in names), inside)
    return kept


def restrict(home: str, readable: Iterable[str], private: Iterable[str] = ()) -> bool:
    """Apply the rules above to this process; False where the kernel cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        abi = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return False
    if abi < 1:
        return False
    # every file-system right of the kernel's Landlock version: v1 has 13, v2 adds REFER, v3
    # TRUNCATE, v5 IOCTL_DEV (v4, v6 and v7 add network and scope rules, not file ones)
    handled = (1 << 13) - 1 | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0) | (_IOCTL_DEV if abi >= 5 else 0)
    file_rights = _FILE_ONLY_V1 | (_TRUNCATE if abi >= 3 else 0) | (_IOCTL_DEV if abi >= 5 else 0)
    attr = ctypes.c_uint64(handled)  # struct landlock_ruleset_attr's first field is all a file rule needs
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(8), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    try:
        private = tuple(os.path.realpath(p) for p in private)
        rules = [(home, handled)]
        folders = sorted({os.path.realpath(r) for r in readable} - {"/dev", "/proc"})  # those: entry by entry below
        rules += [(path, READ) for path in _without(folders, private)]
        rules += [(f"/proc/{os.getpid()}", READ)] + [(path, READ) for path in _PROC]
        rules += [(path, READ | WRITE_FILE | _IOCTL_DEV) for pattern in _DEVICES_RW for path in glob.glob(pattern)]
        rules += [(path, READ) for path in _DEVICES_R]
        for path, rights in rules:
            _add(libc, ruleset, path, rights & handled, file_rights)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)


def _add(libc: ctypes.CDLL, ruleset: int, path: str, rights: int, file_rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # absent here: nothing to allow
    try:
        if not os.path.isdir(path):
            rights &= file_rights  # a file takes only the rights that apply to files
        rule = _PathBeneath(rights, fd)
        libc.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule),
                     ctypes.c_uint32(0))  # fmt: skip
    finally:
        os.close(fd)
