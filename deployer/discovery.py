"""Find the environments to deploy by importing the user's code, as `flyte deploy` does: `FILE VAR`,
`--all FILE`, `--recursive DIR`, with `--root-dir` as the import root.

Deployable environments are what `flyte deploy` has a deployer for: `flyte.TaskEnvironment` (tasks) and
`flyte.app.AppEnvironment` (apps, with its subclasses such as `ConnectorEnvironment`); any other
`flyte.Environment` found is skipped with a warning.

Each file is imported under its dotted path relative to root_dir (the name the task resolver uses in
the container), with root_dir first on `sys.path` and `flyte.current_domain()`/`current_project()`
answering from the selection. The user modules of one discovery are evicted from `sys.modules` at the
start of the next, and the environments it created are taken out of flyte's global registry, so
discovering twice in one process gives the same answer.
"""

from __future__ import annotations

import functools
import importlib
import sys
import sysconfig
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TypeGuard

import flyte
import flyte.app

from deployer import sdk, supervise
from deployer.bundle.ignore import IgnoreRules
from deployer.errors import DiscoveryError, UsageError
from deployer.models import DiscoveredEnv, Discovery, Model
from deployer.request import Selection


class FlyteScope(Model):
    """The project, domain and org user code sees while it is imported."""

    project: str = "flytesnacks"
    domain: str = "development"
    org: str = ""


_LOCK = threading.RLock()
# Module names the previous discovery imported from the project under its root_dir.
_OWNED: set[str] = set()
_FLYTE_DIR = Path(flyte.__file__).resolve().parent
DEPLOYABLE: tuple[type[flyte.Environment], ...] = (flyte.TaskEnvironment, flyte.app.AppEnvironment)
"""The environment types `flyte deploy` registers a deployer for (flyte/_deployer.py, flyte/app)."""


def is_deployable(env: object) -> TypeGuard[flyte.Environment]:
    return isinstance(env, DEPLOYABLE)


def is_app(env: object) -> bool:
    return isinstance(env, flyte.app.AppEnvironment)


def discover(selection: Selection, root_dir: Path, flyte_scope: FlyteScope | None = None) -> Discovery:
    """Import what `selection` names under `root_dir` and return the selected environments and the
    loaded files. `flyte_scope`: what `flyte.current_project()` / `current_domain()` answer meanwhile."""
    if not Path(root_dir).is_dir():
        raise UsageError(f"--root-dir {root_dir}: not a directory")
    root_dir = Path(root_dir).resolve()
    target = _target(selection, root_dir)
    files = _files_to_import(target, selection, root_dir)
    with _LOCK:
        scope = _ImportScope(root_dir, selection, flyte_scope or FlyteScope())
        with scope:
            modules = {path: scope.import_file(path) for path in files}
    bindings = _bindings(scope.user_modules)
    known = [_discovered(e, bindings, target) for e in scope.environments]
    if selection.env_var:
        env = _select_var(target, modules[target], selection.env_var, root_dir)
        selected = [_discovered(env, bindings, target, var=selection.env_var)]
    elif target.is_file() and not (selection.all_envs or selection.recursive):
        raise UsageError(
            f"{_show(target, root_dir)}: name the environment to deploy (FILE VAR) or pass --all; "
            f"TaskEnvironment or AppEnvironment variables in it: {_listing(modules[target])}"
        )
    else:
        roots = [e for e in scope.environments if is_deployable(e)]
        if not roots:
            where = "under" if target.is_dir() else "in"
            raise DiscoveryError(
                f"{_show(target, root_dir)}: no flyte.TaskEnvironment or flyte.app.AppEnvironment found "
                f"{where} it",
                file=str(target),
            )
        selected = [_discovered(e, bindings, target) for e in roots]
    _check_unique(selected, root_dir)
    skipped = [
        f"skipped {type(d.env).__name__} {d.name!r} ({_show(d.file, root_dir)}): flyte deploys only "
        "TaskEnvironments and AppEnvironments"
        for d in known
        if not is_deployable(d.env) and not selection.env_var
    ]
    return Discovery(
        root_dir=root_dir,
        environments=tuple(selected),
        loaded_files=scope.loaded_files,
        sys_paths=(root_dir, *scope.sys_paths),
        all_environments=tuple(known),
        warnings=tuple(skipped),
    )


def _target(selection: Selection, root_dir: Path) -> Path:
    if selection.path is None:
        raise UsageError("nothing to discover: give FILE VAR, --all FILE or --recursive DIR")
    path = Path(selection.path)
    if not path.exists():
        raise DiscoveryError(f"{selection.path}: no such file or directory", file=str(selection.path))
    path = path.resolve()
    if not path.is_relative_to(root_dir):
        raise UsageError(
            f"{selection.path} is not inside --root-dir {root_dir}: "
            "pass the project's import root as --root-dir"
        )
    if selection.env_var and (selection.all_envs or selection.recursive):
        raise UsageError(f"VAR {selection.env_var!r} cannot be combined with --all or --recursive")
    if path.is_dir() and not (selection.recursive or selection.all_envs):
        raise UsageError(f"{selection.path} is a directory: use --recursive DIR (or --all DIR)")
    if path.is_file() and path.suffix != ".py":
        raise UsageError(f"{selection.path}: not a Python file")
    return path


def _files_to_import(target: Path, selection: Selection, root_dir: Path) -> list[Path]:
    if target.is_file():
        return [target]
    files = list(_walk_python_files(target, root_dir)) if selection.recursive else sorted(target.glob("*.py"))
    # Like flyte: packages are imported through their modules, never as stand-alone files.
    files = [f for f in files if f.name != "__init__.py"]
    if not files:
        raise DiscoveryError(f"{_show(target, root_dir)}: no Python files to import", file=str(target))
    return files


def _walk_python_files(top: Path, root_dir: Path) -> Iterator[Path]:
    """`.py` files under `top`, skipping what git ignores, `.flyteignore`, caches and virtualenvs."""
    rules = IgnoreRules(root_dir, standard=True, gitignore=True)
    stack = [top]
    while stack:
        here = stack.pop()
        entries = sorted(here.iterdir(), key=lambda p: p.name)
        subdirs = []
        for entry in entries:
            rel = entry.relative_to(root_dir).as_posix()
            if entry.is_dir():
                if not rules.ignored(rel, is_dir=True):
                    subdirs.append(entry)
            elif entry.suffix == ".py" and entry.is_file() and not rules.ignored(rel, is_dir=False):
                yield entry
        stack.extend(reversed(subdirs))


class _ImportScope:
    """sys.path, sys.modules, flyte's config and environment registry around one discovery."""

    def __init__(self, root_dir: Path, selection: Selection, flyte_scope: FlyteScope) -> None:
        self.root_dir = root_dir
        self.selection = selection
        self.flyte_scope = flyte_scope
        self.environments: list[flyte.Environment] = []
        self.user_modules: dict[str, ModuleType] = {}
        self.loaded_files: tuple[Path, ...] = ()
        self.sys_paths: list[Path] = []

    def __enter__(self) -> _ImportScope:
        for name in _OWNED:
            sys.modules.pop(name, None)
        _OWNED.clear()
        importlib.invalidate_caches()
        self._path_before = list(sys.path)
        sys.path.insert(0, str(self.root_dir))
        self._modules_before = set(sys.modules)
        scope = self.flyte_scope
        self._capture = sdk.capture_environments(
            self.root_dir, project=scope.project, domain=scope.domain, org=scope.org
        )
        self._created = self._capture.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._capture.__exit__(None, None, None)
        sys.path[:] = self._path_before
        self.environments = list(self._created)
        for name in sorted(set(sys.modules) - self._modules_before):
            module = sys.modules.get(name)
            if module is not None and _is_user_module(module, self.root_dir):
                self.user_modules[name] = module
        _OWNED.update(self.user_modules)
        loaded = {file for m in self.user_modules.values() if (file := _module_file(m)) is not None}
        linked = _linked_outside(set(sys.modules) - self._modules_before, self.root_dir)
        self.loaded_files = tuple(sorted(loaded | linked))

    def import_file(self, path: Path) -> ModuleType:
        name = _module_name(path, self.root_dir)
        if not self.selection.recursive:
            self._add_folder(path.parent)
        try:
            with supervise.importing(_show(path, self.root_dir)):
                module = importlib.import_module(name)
        except SyntaxError as exc:
            raise _syntax_error(exc, path, self.root_dir) from exc
        except SystemExit as exc:
            raise DiscoveryError(
                f"{_show(path, self.root_dir)}: called sys.exit({exc.code!r}) while being imported",
                file=str(path),
            ) from exc
        except Exception as exc:
            raise _import_error(exc, path, self.root_dir) from exc
        file = _module_file(module)
        if file != path:
            raise DiscoveryError(
                f"{_show(path, self.root_dir)}: imports as module {name!r}, but that name is already "
                f"taken by {file or 'a built-in module'}: rename the file or change --root-dir",
                file=str(path),
            )
        return module

    def _add_folder(self, folder: Path) -> None:
        """`flyte deploy FILE` appends FILE's folder to sys.path, so its sibling modules import; the
        runtime re-adds the same folder (relative to the code root) from `_F_SYS_PATH`."""
        if folder == self.root_dir or str(folder) in sys.path:
            return
        sys.path.append(str(folder))
        self.sys_paths.append(folder)


def _module_name(path: Path, root_dir: Path) -> str:
    parts = list(path.relative_to(root_dir).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    if not parts:
        raise UsageError(f"{path}: cannot import root_dir's own __init__.py; point --root-dir one level up")
    return ".".join(parts)


def _module_file(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


@functools.cache
def _library_dirs() -> tuple[Path, ...]:
    """The standard library and installed-package directories of this interpreter and its venv.

    Narrower than Flyte's "anything under sys.prefix": a project checked out under the interpreter's
    prefix (say /usr/src/app with Python in /usr) still counts as user code."""
    dirs = {_FLYTE_DIR}
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        paths = sysconfig.get_paths(
            vars={"base": prefix, "platbase": prefix, "installed_base": prefix, "installed_platbase": prefix}
        )
        dirs.update(Path(paths[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib"))
    return tuple(sorted(dirs))


def _is_library_file(path: Path) -> bool:
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return True
    return any(path.is_relative_to(d) for d in _library_dirs())


def _is_user_module(module: ModuleType, root_dir: Path) -> bool:
    """A module of the project under root_dir (what the next discovery evicts and re-imports)."""
    file = _module_file(module)
    if file is not None:
        return file.is_relative_to(root_dir) and not _is_library_file(file)
    # Namespace packages (monorepo folders without __init__.py) have only a search path.
    paths = [Path(p).resolve() for p in getattr(module, "__path__", [])]
    return bool(paths) and all(p.is_relative_to(root_dir) for p in paths)


def _linked_outside(names: set[str], root_dir: Path) -> set[Path]:
    """Modules imported from under root_dir through a symlink that leads outside it, by the path
    they were imported as: the bundle selection refuses them, naming the link (it cannot ship them,
    and leaving them out fails only at run time)."""
    found: set[Path] = set()
    for name in names:
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file:
            continue
        path, real = Path(file).absolute(), Path(file).resolve()
        escapes = path.is_relative_to(root_dir) and not real.is_relative_to(root_dir)
        if escapes and not (_is_library_file(path) or _is_library_file(real)):
            found.add(path)
    return found


def _show(path: Path, root_dir: Path) -> str:
    path = Path(path)
    return path.relative_to(root_dir).as_posix() if path.is_relative_to(root_dir) else str(path)


def _syntax_error(exc: SyntaxError, path: Path, root_dir: Path) -> DiscoveryError:
    file = Path(exc.filename).resolve() if exc.filename else path
    where = f"{_show(file, root_dir)}:{exc.lineno}" if exc.lineno else _show(file, root_dir)
    return DiscoveryError(
        f"{where}: {type(exc).__name__}: {exc.msg}{_via(file, path, root_dir)}",
        file=str(file),
        line=exc.lineno,
    )


def _import_error(exc: BaseException, path: Path, root_dir: Path) -> DiscoveryError:
    frame = _user_frame(exc.__traceback__, root_dir)
    file, line = frame if frame else (path, None)
    where = f"{_show(file, root_dir)}:{line}" if line else _show(file, root_dir)
    detail = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    hint = f" (imports resolve from --root-dir {root_dir})" if isinstance(exc, ModuleNotFoundError) else ""
    return DiscoveryError(
        f"{where}: {type(exc).__name__}{': ' + detail if detail else ''}{hint}{_via(file, path, root_dir)}",
        file=str(file),
        line=line,
    )


def _via(file: Path, path: Path, root_dir: Path) -> str:
    return "" if file == path else f" (while importing {_show(path, root_dir)})"


def _user_frame(tb: TracebackType | None, root_dir: Path) -> tuple[Path, int] | None:
    """The innermost traceback frame in the user's project: where their code went wrong."""
    found: tuple[Path, int] | None = None
    for frame, line in traceback.walk_tb(tb):
        name = frame.f_code.co_filename
        if name.startswith("<"):
            continue
        file = Path(name).resolve()
        if file.is_relative_to(root_dir) and not _is_library_file(file):
            found = (file, line)
    return found


def _bindings(modules: dict[str, ModuleType]) -> dict[int, list[tuple[Path, str]]]:
    """For each environment object: the (module file, variable) pairs that name it."""
    found: dict[int, list[tuple[Path, str]]] = {}
    for name in sorted(modules):
        file = _module_file(modules[name])
        if file is None:
            continue
        for var, value in vars(modules[name]).items():
            if isinstance(value, flyte.Environment):
                found.setdefault(id(value), []).append((file, var))
    return found


def _discovered(
    env: flyte.Environment,
    bindings: dict[int, list[tuple[Path, str]]],
    fallback: Path,
    var: str | None = None,
) -> DiscoveredEnv:
    file_of = sdk.declaring_file(env)
    declared = file_of.resolve() if file_of else None
    names = bindings.get(id(env), [])
    # Prefer the binding in the file that created it over re-exports elsewhere.
    binding = next((b for b in names if b[0] == declared), names[0] if names else None)
    file = declared or (binding[0] if binding else fallback)
    return DiscoveredEnv(name=env.name, env=env, var=var or (binding[1] if binding else None), file=file)


def _select_var(target: Path, module: ModuleType, var: str, root_dir: Path) -> flyte.Environment:
    shown = _show(target, root_dir)
    if not hasattr(module, var):
        raise DiscoveryError(
            f"{shown}: no variable {var!r}; TaskEnvironment or AppEnvironment variables in it: "
            f"{_listing(module)}",
            file=str(target),
        )
    value = getattr(module, var)
    if not is_deployable(value):
        kind = type(value).__name__
        message = f"{shown}: {var!r} is of type {kind}, not a flyte.TaskEnvironment or AppEnvironment"
        raise DiscoveryError(message, file=str(target))
    return value


def _listing(module: ModuleType) -> str:
    envs = sorted(k for k, v in vars(module).items() if is_deployable(v))
    return ", ".join(envs) if envs else "none"


def _check_unique(envs: list[DiscoveredEnv], root_dir: Path) -> None:
    seen: dict[str, DiscoveredEnv] = {}
    for found in envs:
        other = seen.setdefault(found.name, found)
        if other.env is not found.env:
            raise DiscoveryError(
                f"two different environments are named {found.name!r}: {_show(other.file, root_dir)} and "
                f"{_show(found.file, root_dir)}",
                file=str(found.file),
            )
