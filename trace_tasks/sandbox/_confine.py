"""The kernel layers the child runner puts between a handler and the machine, before any user
code is imported: rlimits, a dedicated uid, no_new_privs, Landlock and a seccomp filter.

Standard library only (ctypes syscalls): this file runs inside `python -I -S` with no
site-packages, and on a fresh machine it needs no OS package. Every function raises
`Unavailable` when the kernel refuses a layer, and the runner then never imports the handler.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import struct

PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on x86_64 and aarch64
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_ABI1 = (1 << 13) - 1  # execute .. make_sym
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int


class Unavailable(Exception):
    """A kernel layer the sandbox requires cannot be applied: never run the handler."""


def _fail(what: str) -> Unavailable:
    err = ctypes.get_errno()
    return Unavailable(f"{what}: {os.strerror(err)} (errno {err})")


def _prctl(option: int, arg2: int | ctypes.c_void_p = 0, what: str = "prctl") -> None:
    if _libc.prctl(option, arg2, 0, 0, 0) != 0:
        raise _fail(what)


# -- Landlock ------------------------------------------------------------------------------


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    abi = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return max(int(abi), 0)


def _fs_rights(abi: int) -> int:
    rights = FS_ABI1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def landlock_restrict(
    read_only: list[int], read_write: list[int], execute: tuple[int, ...] = ()
) -> int:
    """Confine this process to reading (no execute) beneath the `read_only` fds and to
    everything but device ioctls beneath the `read_write` ones; with ABI 4 no TCP bind or
    connect; with ABI 6 no abstract unix socket or signal outside the sandbox (so the
    handler cannot signal its supervisor). Requires no_new_privs. Returns the ABI used."""
    abi = landlock_abi()
    if abi < 1:
        raise Unavailable("Landlock is not available in this kernel (or disabled at boot)")
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
    ruleset = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        raise _fail("landlock_create_ruleset")
    try:
        read = FS_READ_FILE | FS_READ_DIR
        write = handled & ~FS_IOCTL_DEV
        # `execute`: the files of a runtime exec'd after confinement (node and its ELF
        # interpreter, which the kernel opens for execute too), read and execute only.
        for fds, rights in (
            (read_only, read),
            (read_write, write),
            (list(execute), FS_READ_FILE | FS_EXECUTE),
        ):
            for fd in fds:
                allowed = rights
                if not os.path.isdir(f"/proc/self/fd/{fd}"):
                    allowed &= FILE_RIGHTS
                rule = _PathBeneath(allowed, fd)
                if _libc.syscall(
                    SYS_LANDLOCK_ADD_RULE,
                    ruleset,
                    LANDLOCK_RULE_PATH_BENEATH,
                    ctypes.byref(rule),
                    0,
                ):
                    raise _fail("landlock_add_rule")
        if _libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0):
            raise _fail("landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


# -- seccomp -------------------------------------------------------------------------------

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# Denied with EPERM (so Python raises a clear PermissionError): new sockets and network
# endpoints (the one inherited socket is already connected), tracing and other processes'
# memory, namespaces and mounts, kernel surfaces (bpf, perf, io_uring, keys, userfaultfd,
# modules, kexec), identity changes after the uid switch, new sessions or process groups
# (which would escape the supervisor's killpg).
DENIED = {
    "x86_64": {
        "socket": 41,
        "connect": 42,
        "accept": 43,
        "bind": 49,
        "listen": 50,
        "socketpair": 53,
        "accept4": 288,
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "unshare": 272,
        "setns": 308,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "chroot": 161,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
        "bpf": 321,
        "perf_event_open": 298,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "keyctl": 250,
        "add_key": 248,
        "request_key": 249,
        "userfaultfd": 323,
        "setuid": 105,
        "setgid": 106,
        "setreuid": 113,
        "setregid": 114,
        "setgroups": 116,
        "setresuid": 117,
        "setresgid": 119,
        "setfsuid": 122,
        "setfsgid": 123,
        "kexec_load": 246,
        "kexec_file_load": 320,
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "swapon": 167,
        "swapoff": 168,
        "reboot": 169,
        "sethostname": 170,
        "setdomainname": 171,
        "acct": 163,
        "personality": 135,
        "name_to_handle_at": 303,
        "open_by_handle_at": 304,
        "setsid": 112,
        "setpgid": 109,
        "pidfd_getfd": 438,
        "seccomp": 317,
    },
    "aarch64": {
        "socket": 198,
        "socketpair": 199,
        "bind": 200,
        "listen": 201,
        "accept": 202,
        "connect": 203,
        "accept4": 242,
        "ptrace": 117,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "unshare": 97,
        "setns": 268,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "chroot": 51,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
        "bpf": 280,
        "perf_event_open": 241,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "keyctl": 219,
        "add_key": 217,
        "request_key": 218,
        "userfaultfd": 282,
        "setuid": 146,
        "setgid": 144,
        "setreuid": 145,
        "setregid": 143,
        "setgroups": 159,
        "setresuid": 147,
        "setresgid": 149,
        "setfsuid": 151,
        "setfsgid": 152,
        "kexec_load": 104,
        "kexec_file_load": 294,
        "init_module": 105,
        "finit_module": 273,
        "delete_module": 106,
        "swapon": 224,
        "swapoff": 225,
        "reboot": 142,
        "sethostname": 161,
        "setdomainname": 162,
        "acct": 89,
        "personality": 92,
        "name_to_handle_at": 264,
        "open_by_handle_at": 265,
        "setsid": 157,
        "setpgid": 154,
        "pidfd_getfd": 438,
        "seccomp": 277,
    },
}
CLONE = {"x86_64": 56, "aarch64": 220}
CLONE3 = 435
CLONE_NAMESPACES = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
RET_KILL_PROCESS = 0x80000000
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
EPERM = 1
ENOSYS = 38


def _op(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def seccomp_program(machine: str | None = None) -> bytes:
    """The BPF program: kill on a foreign architecture (or x32 calls), EPERM for DENIED and
    for clone with namespace flags, ENOSYS for clone3 (libc falls back to clone, whose flags
    a filter can see), allow the rest."""
    machine = machine or platform.machine()
    if machine not in AUDIT_ARCH:
        raise Unavailable(f"no seccomp filter for architecture {machine!r}")
    prog = [
        _op(_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        _op(_JEQ_K, 1, 0, AUDIT_ARCH[machine]),
        _op(_RET_K, 0, 0, RET_KILL_PROCESS),
        _op(_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        prog += [_op(_JGE_K, 0, 1, 0x40000000), _op(_RET_K, 0, 0, RET_KILL_PROCESS)]
    prog += [
        _op(_JEQ_K, 0, 4, CLONE[machine]),
        _op(_LD_W_ABS, 0, 0, 16),  # args[0] low half: the clone flags
        _op(_JSET_K, 0, 1, CLONE_NAMESPACES),
        _op(_RET_K, 0, 0, RET_ERRNO | EPERM),
        _op(_RET_K, 0, 0, RET_ALLOW),
        _op(_JEQ_K, 0, 1, CLONE3),
        _op(_RET_K, 0, 0, RET_ERRNO | ENOSYS),
    ]
    for nr in sorted(set(DENIED[machine].values())):
        prog += [_op(_JEQ_K, 0, 1, nr), _op(_RET_K, 0, 0, RET_ERRNO | EPERM)]
    prog.append(_op(_RET_K, 0, 0, RET_ALLOW))
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_install() -> None:
    program = seccomp_program()
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise _fail("seccomp filter")


# -- identity and limits -------------------------------------------------------------------


def rlimits_set(limits: dict[str, int], *, address_space: bool = True) -> None:
    """`address_space=False` caps the data segment (RLIMIT_DATA) instead of the address
    space: V8 reserves far more address space than it ever uses, and cannot start under
    RLIMIT_AS at any sensible memory limit."""
    cpu = limits["cpu_seconds"]
    memory = resource.RLIMIT_AS if address_space else resource.RLIMIT_DATA
    for which, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # SIGXCPU at the soft limit, SIGKILL after
        (memory, (limits["memory_bytes"],) * 2),
        (resource.RLIMIT_NPROC, (limits["max_processes"],) * 2),
        (resource.RLIMIT_FSIZE, (limits["file_size_bytes"],) * 2),
        (resource.RLIMIT_NOFILE, (limits["open_files"],) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(which, value)


def identity_drop(uid: int, gid: int) -> None:
    """The slot's own uid and gid with no supplementary groups: RLIMIT_NPROC counts per uid,
    and the handler can touch nothing another uid owns. Dumpable again afterwards so the
    process can open its own /proc/self/fd (the paths its imports go through); ptrace and
    signals from outside stay refused by seccomp and Landlock."""
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise Unavailable(f"cannot switch to uid {uid}: {exc}") from None
    if os.getuid() != uid or os.geteuid() != uid or os.getgroups():
        raise Unavailable(f"the switch to uid {uid} did not take")
    _prctl(PR_SET_DUMPABLE, 1, what="prctl(PR_SET_DUMPABLE)")


def no_new_privs() -> None:
    _prctl(PR_SET_NO_NEW_PRIVS, 1, what="prctl(PR_SET_NO_NEW_PRIVS)")
