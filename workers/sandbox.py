"""The sandboxed worker that trains submitted model code (``POST /v1/models``, LEMUR's ``check_nn``).

Run as ``python -m workers.sandbox REPORT_FD`` by ``service.lemur.sandbox``, in a fresh process of its
own session, inside a private temporary directory, with the job on stdin. It reports JSON lines
on the file descriptor ``REPORT_FD``; the model's own prints go to ``output.log`` in its directory.

The code's stages, each ending in a structured failure an LLM can act on:

1. ``syntax``   — the code must compile (the failure names the line and column);
2. ``contract`` — LEMUR's contract: ``supported_hyperparameters()``, ``class Net`` with
   ``__init__(self, in_shape, out_shape, prm, device)``, ``train_setup(prm)``, ``learn(data)``,
   ``forward``; checked on the text, then on the executed module;
3. ``shape``    — ``Net`` built for the dataset's (transformed) input runs a forward pass on a real
   batch and returns ``(batch, *out_shape)``; the failure gives the tensor shapes;
   A user's transform file (``transform_code``, LEMUR's ``transform_dir``) is compiled with the
   code's text and executed after the audit hook; whatever it does wrong is kind ``transform``;
4. training epochs: ``nan_loss`` (a NaN or infinite loss), ``oom`` (past the memory cap),
   ``runtime`` (any other exception, its traceback trimmed to the model's frames). ``timeout``
   is decided by the parent, which kills the process group.

Isolation, set up before any submitted code runs: resource limits (private memory via
RLIMIT_DATA, CPU seconds, file size, open files, no core dumps); a network namespace of its own
where the kernel allows unprivileged user namespaces (no network at all), and in any case an audit
hook (PEP 578) that refuses sockets, new processes (``fork``, ``subprocess``, ``exec``, ``system``,
``posix_spawn``), signals to other processes, ``ctypes``, raising resource limits, and writes,
renames and deletions outside the private directory. The hook keeps honest-but-wrong code from
doing harm; it is not a boundary against code written to escape Python (which the parent's
process-group kill, the limits and the namespace still contain).
"""

from __future__ import annotations

import ctypes
import inspect
import io
import json
import os
import resource
import sys
import traceback
from typing import Any

from .landlock import restrict

#: events the audit hook refuses outright once submitted code may run
_DENIED = (
    "os.fork",
    "os.forkpty",
    "os.posix_spawn",
    "os.spawn",
    "os.exec",
    "os.system",
    "os.killpg",
    "subprocess.Popen",
    "_posixsubprocess",
    "socket.__new__",
    "socket.connect",
    "socket.bind",
    "socket.sendto",
    "socket.sendmsg",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
    "ctypes.",
    "resource.setrlimit",
    "resource.prlimit",
    "os.chdir",
    "os.chroot",
    "sys._current_frames",
    "pty.spawn",
)
#: file-system events whose first argument is a path that must lie in the private directory
_PATH_EVENTS = {
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
    "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile", "shutil.copytree",
    "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod", "os.setxattr", "os.removexattr",
}  # fmt: skip
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1


class _Report:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __call__(self, kind: str, **data: Any) -> None:
        line = json.dumps({"kind": kind, **data}, default=str) + "\n"
        os.write(self.fd, line.encode())


class StageFailure(Exception):
    def __init__(self, kind: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details


# ---- isolation ------------------------------------------------------------------------------------
def _limit(which: int, value: int) -> None:
    """Set a limit, soft and hard (a hard limit cannot be raised again without privileges)."""
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _own_network_namespace() -> bool:
    """Move into a new user and network namespace: no interface but a down loopback."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0
    except (OSError, AttributeError):
        return False


def _die_with_parent() -> None:
    """SIGKILL when the thread that started this process ends (a Ray worker cancelled, a server
    killed): a sandbox never outlives the process that follows it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, 9)
    except (OSError, AttributeError):
        return
    parent = os.environ.get("CELLAR_SANDBOX_PARENT")
    if parent and os.getppid() != int(parent):  # it ended before the prctl
        os._exit(1)


def _vm_data() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmData:")) * 1024


#: system folders the code may read (libraries, devices, the kernel's views of this process; the
#: kernel's rules narrow ``/dev`` and ``/proc`` further: ``workers.landlock``)
_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/etc", "/dev", "/proc", "/sys", "/opt")


def _readable_roots(home: str, data_dir: str | None) -> tuple[str, ...]:
    """Where the code may read: its own directory, Python's and the libraries' folders (``sys.path``,
    the prefixes), the datasets and the system's folders; no other user's files, no other sandbox's."""
    roots = {home, sys.prefix, sys.base_prefix, sys.exec_prefix, *_SYSTEM_READ}
    roots.update(entry for entry in sys.path if entry and os.path.isabs(entry))
    if data_dir:
        roots.add(data_dir)
    return tuple(sorted({os.path.realpath(root) for root in roots}))


def _under(real: str, roots: tuple[str, ...]) -> bool:
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _install_audit_hook(home: str, *, private: tuple[str, ...] = (), data_dir: str | None = None) -> None:
    """Refuse, from here on: sockets, processes, native calls, signals to others; writes outside
    ``home``; reads outside the readable roots, and of the server's ``private`` files anywhere."""
    home = os.path.realpath(home)
    readable = _readable_roots(home, data_dir)
    private = tuple(os.path.realpath(path) for path in private)

    def real_path(path: Any) -> str | None:
        try:
            return os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return None

    def inside(path: Any) -> bool:
        if isinstance(path, int):  # an open descriptor: its opening was checked
            return True
        real = real_path(path)
        return real is not None and (real == "/dev/null" or _under(real, (home,)))

    def check_read(path: Any) -> None:
        if isinstance(path, int):
            return
        real = real_path(path)
        if real is not None and _under(real, private):
            raise PermissionError(f"the sandbox does not allow reading the server's own files, such as {path!r}")
        if real is not None and real.startswith("/proc/"):
            entry = real.split("/")[2]
            if entry.isdigit() and int(entry) != os.getpid():
                raise PermissionError(f"the sandbox does not allow reading other processes' files, such as {path!r}")
        if real is None or not _under(real, readable):
            raise PermissionError(
                f"the sandbox allows reading only its own directory, the datasets, Python's libraries and "
                f"system files, not {path!r}"
            )

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(_DENIED):
            raise PermissionError(f"the sandbox does not allow {event} (no network, processes or native calls)")
        if event == "open" and args:
            path, mode, flags = (list(args) + [None, None])[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing and not inside(path):
                raise PermissionError(f"the sandbox allows writing only in its own directory, not {path!r}")
            check_read(path)
        elif event in _PATH_EVENTS and args:
            for path in args[:2] if event in ("os.rename", "os.link", "os.symlink", "shutil.move") else args[:1]:
                if not inside(path):
                    raise PermissionError(f"the sandbox allows changing files only in its own directory, not {path!r}")
        elif event == "os.kill" and args and args[0] not in (0, os.getpid()):
            raise PermissionError("the sandbox does not allow signals to other processes")

    sys.addaudithook(hook)


# ---- stages ---------------------------------------------------------------------------------------
def _check_syntax(code: str, filename: str) -> None:
    try:
        compile(code, filename, "exec")
    except SyntaxError as error:
        where = f"line {error.lineno}" + (f", column {error.offset}" if error.offset else "")
        text = (error.text or "").rstrip()
        raise StageFailure(
            "syntax", f"{where}: {error.msg}" + (f": {text.strip()}" if text else ""), line=error.lineno, column=error.offset
        ) from None


def _check_transform_syntax(payload: dict[str, Any]) -> None:
    """A user's transform file (LEMUR's ``transform_dir``) must compile too: its own failure kind."""
    code = payload.get("transform_code")
    if code is None:
        return
    name = str(payload["prm"].get("transform"))
    try:
        compile(code, f"<transform {name}.py>", "exec")
    except SyntaxError as error:
        where = f"line {error.lineno}" + (f", column {error.offset}" if error.offset else "")
        raise StageFailure(
            "transform", f"the transform file {name}.py does not compile: {where}: {error.msg}",
            line=error.lineno, column=error.offset,
        ) from None


def _transform_failure(error: Any, name: str) -> StageFailure:
    """A ``TransformCodeError`` as the ``transform`` failure, with the traceback from the file's frames."""
    from search_spaces.transforms.user import transform_filename

    details = {"line": error.line} if error.line else {}
    if error.error is not None and not isinstance(error.error, SyntaxError):
        details["traceback"] = _model_frames(error.error, transform_filename(name))
    return StageFailure("transform", str(error), **details)


def _prepare_user_transform(runner: Any, trial: Any) -> Any:
    """The trial's batches through the user's transform file, executed here, after the audit hook."""
    from search_spaces.errors import IncompatibleDatasetError
    from search_spaces.transforms.user import load_user_transform

    adapter = load_user_transform(trial.transform_code, str(trial.prm.get("transform")))
    try:
        return runner.prepare(trial, transform=adapter)
    except IncompatibleDatasetError as error:
        raise StageFailure("transform", str(error)) from None


def _check_contract(module: Any) -> None:
    problems = []
    supported = getattr(module, "supported_hyperparameters", None)
    if not callable(supported):
        problems.append("define a module-level function supported_hyperparameters() returning the names of prm it uses")
    net = getattr(module, "Net", None)
    if not inspect.isclass(net):
        problems.append("define class Net(torch.nn.Module) at module level")
    else:
        for method in ("train_setup", "learn", "forward"):
            if not callable(getattr(net, method, None)):
                problems.append(f"Net has no method {method}()")
        try:
            inspect.signature(net.__init__).bind(None, (1,), (1,), {}, "cpu")
        except TypeError:
            signature = inspect.signature(net.__init__)
            problems.append(f"Net.__init__{signature} must accept (self, in_shape, out_shape, prm, device)")
        except ValueError:
            pass
    if problems:
        raise StageFailure("contract", "; ".join(problems))


def _shape_of(value: Any) -> Any:
    if hasattr(value, "shape"):
        return list(value.shape)
    if isinstance(value, (list, tuple)):
        return [_shape_of(v) for v in value]
    return type(value).__name__


def _model_frames(error: BaseException, filename: str, limit: int = 8) -> str:
    """The traceback from the first frame of the submitted code on, at most ``limit`` frames."""
    frames = traceback.extract_tb(error.__traceback__)
    first = next((i for i, f in enumerate(frames) if f.filename == filename), max(0, len(frames) - limit))
    text = "".join(traceback.format_list(frames[first : first + limit]))
    return text + "".join(traceback.format_exception_only(type(error), error))


def _probe(ready: Any, payload: Any, module: Any, filename: str) -> dict[str, Any]:
    """Build Net for the dataset and run one forward pass on a real batch (``ready``: the trial's
    ``TrialRunner.prepare``)."""
    import torch

    info, _, prepared, in_shape, out_shape = ready
    try:
        model = module.Net(in_shape, out_shape, dict(payload.prm), torch.device("cpu"))
    except MemoryError:
        raise
    except Exception as error:
        raise StageFailure(
            "runtime",
            f"Net(in_shape={list(in_shape)}, out_shape={list(out_shape)}, prm, device) raised "
            f"{type(error).__name__}: {error}",
            traceback=_model_frames(error, filename),
        ) from None
    batch = prepared.batch
    model.eval()
    try:
        with torch.no_grad():
            output = model(batch)
    except MemoryError:
        raise
    except Exception as error:
        raise StageFailure(
            "shape",
            f"the forward pass fails on a batch of shape {_shape_of(batch)} (in_shape {list(in_shape)} "
            f"for dataset {payload.dataset!r}): {type(error).__name__}: {error}",
            input_shape=_shape_of(batch),
            in_shape=list(in_shape),
            traceback=_model_frames(error, filename),
        ) from None
    if isinstance(output, torch.Tensor) and isinstance(batch, torch.Tensor):
        want = [batch.shape[0], *out_shape]
        if list(output.shape) != want:
            raise StageFailure(
                "shape",
                f"the forward pass on a batch of shape {_shape_of(batch)} returns {list(output.shape)}; "
                f"dataset {payload.dataset!r} needs {want} (out_shape {list(out_shape)})",
                input_shape=_shape_of(batch),
                output_shape=list(output.shape),
                expected_shape=want,
            )
    return {"in_shape": list(in_shape), "out_shape": list(out_shape), "classes": info.out_shape[0] if info.out_shape else None}


def code_quality(code: str, passed_checks: bool) -> float:
    """LEMUR's ``code_quality`` score, with pyflakes and mccabe in place of pylint and radon:
    from 100, minus 2 per pyflakes warning, 1 per function of cyclomatic complexity over 10, and
    10 if the model failed its checks before training; over 100."""
    import ast

    from mccabe import PathGraphingAstVisitor
    from pyflakes.api import check
    from pyflakes.reporter import Reporter

    warnings = io.StringIO()
    count = check(code, "model.py", Reporter(warnings, io.StringIO()))
    score = 100 - 2 * count
    try:
        visitor = PathGraphingAstVisitor()
        visitor.preorder(ast.parse(code), visitor)
        score -= sum(1 for graph in visitor.graphs.values() if graph.complexity() > 10)
    except SyntaxError:
        score -= 10
    if not passed_checks:
        score -= 10
    return max(0, score) / 100.0


def _fail(report: _Report, failure: StageFailure, code: str, passed: bool) -> None:
    report("failure", failure={"kind": failure.kind, "message": str(failure), **failure.details})
    report("quality", code_quality=code_quality(code, passed))


def main() -> None:
    from search_spaces.code.space import inspect_model_code

    _die_with_parent()
    report = _Report(int(sys.argv[1]))
    job = json.loads(sys.stdin.read())
    home = os.getcwd()
    limits = job["limits"]
    # the model's prints (and Python's warnings) go to a file, not to the report channel
    log = os.open(os.path.join(home, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.dont_write_bytecode = True
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_FSIZE, int(limits["file_mb"]) * 1024 * 1024)
    _limit(resource.RLIMIT_NOFILE, 256)
    _limit(resource.RLIMIT_CPU, int(limits["cpu_s"]))
    isolated = _own_network_namespace()

    payload = job["payload"]
    code, filename = payload["nn_code"], f"<nn_code {payload['nn_name']}>"
    passed = False
    try:
        # the text first: no submitted code runs, and no torch is needed, to find these
        _check_syntax(code, filename)
        _check_transform_syntax(payload)
        try:
            inspect_model_code(code)
        except ValueError as error:
            raise StageFailure("contract", str(error)) from None
    except StageFailure as failure:
        _fail(report, failure, code, passed)
        return

    # everything the harness needs is imported and loaded before the code may run; torchvision too,
    # with its compiled operators (loaded through ctypes, which the audit hook refuses afterwards):
    # LEMUR's models and generated code import it
    import torch
    import torchvision.ops

    assert torchvision.ops.nms is not None  # its compiled operators are loaded now

    from search_spaces.transforms.user import TransformCodeError

    from .nn_module import load_nn_module
    from .protocol import TrialPayload
    from .runner import TrialDiverged, TrialOutOfMemory, TrialRunner

    torch.set_num_threads(1)
    trial = TrialPayload.from_dict(payload)
    runner = TrialRunner(threads=1)
    # the data, split and batches are the harness's, made before the cap: the model's memory is its own.
    # A user's transform file is submitted code: it runs after the hook, its batches in the model's memory
    if trial.transform_code is None:
        ready = runner.prepare(trial)
    else:
        runner.load(trial)
    _limit(resource.RLIMIT_DATA, _vm_data() + int(limits["memory_mb"]) * 1024 * 1024)
    private, data_dir = tuple(limits.get("private_paths", ())), os.environ.get("CELLAR_DATA_DIR")
    # the kernel's file rules first (they need ctypes, which the hook then refuses)
    kernel_files = restrict(home, _readable_roots(home, data_dir), private)
    network = "no network (own namespace)" if isolated else "network: audit hook only"
    files = "files: kernel rules (Landlock) and audit hook" if kernel_files else "files: audit hook only"
    report("ready", network=f"{network}; {files}", pid=os.getpid())
    _install_audit_hook(home, private=private, data_dir=data_dir)

    try:
        if trial.transform_code is not None:
            ready = _prepare_user_transform(runner, trial)
        try:
            module = load_nn_module(code, trial.nn_name)
        except MemoryError:
            raise
        except Exception as error:
            raise StageFailure(
                "runtime",
                f"executing the module raised {type(error).__name__}: {error}",
                traceback=_model_frames(error, filename),
            ) from None
        _check_contract(module)
        shapes = _probe(ready, trial, module, filename)
        passed = True
        report("checked", **shapes)
        setup = runner.setup(trial.to_dict(), ready)
        report("setup", **setup)
        for _ in range(trial.epochs):
            epoch = runner.train_epoch()
            report("epoch", **epoch)
        report("final", **runner.finish())
    except StageFailure as failure:
        _fail(report, failure, code, passed)
        return
    except TransformCodeError as error:
        _fail(report, _transform_failure(error, str(trial.prm.get("transform"))), code, passed)
        return
    except TrialDiverged as error:
        _fail(report, StageFailure("nan_loss", str(error)), code, passed)
        return
    except (TrialOutOfMemory, MemoryError) as error:
        cause = error.__cause__ if isinstance(error, TrialOutOfMemory) and error.__cause__ else error
        lines = str(cause).strip().splitlines() or [f"{type(cause).__name__}: an allocation failed"]
        message = f"out of memory: the model needed more than its {limits['memory_mb']} MiB: {lines[0][:300]}"
        _fail(report, StageFailure("oom", message, traceback=_model_frames(cause, filename)), code, passed)
        return
    except Exception as error:
        text = str(error)
        if isinstance(error, RuntimeError) and any(m in text for m in ("can't allocate memory", "out of memory")):
            _fail(report, StageFailure("oom", f"out of memory (cap {limits['memory_mb']} MiB): {text[:300]}"), code, passed)
            return
        failure = StageFailure(
            "runtime", f"{type(error).__name__}: {text[:1000]}", traceback=_model_frames(error, filename)
        )
        _fail(report, failure, code, passed)
        return
    report("quality", code_quality=code_quality(code, True))


if __name__ == "__main__":
    main()
