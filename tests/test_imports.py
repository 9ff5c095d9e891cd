"""Every module of the package imports on its own, and the package has no import cycle (also none hidden
behind imports inside functions)."""

from __future__ import annotations

import ast
import importlib.util
import multiprocessing
from pathlib import Path

import pytest

import transformers_sharegpt4v

PACKAGE_DIR = Path(transformers_sharegpt4v.__file__).parent
PACKAGE = "transformers_sharegpt4v"
NO_CYCLES_IN = (PACKAGE,)  # the whole package


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_name(path): path
    for path in sorted(PACKAGE_DIR.rglob("*.py"))
    if "__pycache__" not in path.parts and not path.name.startswith("test_")
}


def _imported(name: str, path: Path) -> set[str]:
    """Package modules that `name` imports with relative or absolute `from ... import` / `import`,
    at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from .pkg import mod` imports the module pkg.mod; `from .mod import name` imports mod
            targets = [
                f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target for alias in node.names
            ]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def import_graph() -> dict[str, set[str]]:
    return {name: _imported(name, path) for name, path in MODULES.items()}


def test_import_graph_has_no_cycle_in_corpora_and_captioning():
    cycles = _cycles(import_graph())
    ours = [c for c in cycles if any(m == p or m.startswith(p + ".") for m in c for p in NO_CYCLES_IN)]
    assert ours == [], f"import cycles: {ours}"


def test_cycle_finder_sees_a_cycle_through_an_import_inside_a_function():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


# modules that need an optional extra: module -> the package it needs
OPTIONAL = {"transformers_sharegpt4v.evaluation.lmms_eval_model": "lmms_eval"}


# What each new process has imported before it imports one of our modules: the heavy third-party imports all of
# them share (about 10 s a process on 2 cores), loaded once by a fork server. None of the package's own modules
# is among them, so a module that only imports because another of ours was imported first still fails.
PRELOAD = ["torch", "transformers", "transformers.modeling_utils"]
IMPORT_ALONE = """
import importlib, sys, traceback
early = sorted(m for m in sys.modules if m.split(".")[0] == {package!r})
try:
    assert not early, f"imported before the test: {{early}}"
    importlib.import_module({name!r})
except BaseException:
    with open({report!r}, "w") as file:
        traceback.print_exc(file=file)
    raise SystemExit(1)
"""


@pytest.fixture(scope="module")
def new_processes():
    """A multiprocessing context whose processes fork from a server that imported PRELOAD (only that)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _import_alone(context, name: str, folder: Path) -> tuple[int | None, str]:
    """Import module `name` in a new process of `context`: its exit code and traceback."""
    report = folder / f"{name}.traceback.txt"
    process = context.Process(
        target=exec, args=(IMPORT_ALONE.format(package=PACKAGE, name=name, report=str(report)), {})
    )
    process.start()
    process.join(300)
    if process.exitcode is None:  # still importing after 5 minutes
        process.kill()
        return None, f"{name} did not import within 300 s"
    return process.exitcode, report.read_text() if report.exists() else ""


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.endswith("__main__")))
def test_every_module_imports_alone_in_a_new_process(name, new_processes, tmp_path):
    if name in OPTIONAL and importlib.util.find_spec(OPTIONAL[name]) is None:
        pytest.skip(f"{name} needs {OPTIONAL[name]} (an optional extra), which is not installed")
    exitcode, failure = _import_alone(new_processes, name, tmp_path)
    assert exitcode == 0, f"exit code {exitcode}: {failure[-3000:]}"


def test_import_alone_fails_on_a_name_the_module_did_not_import(new_processes, tmp_path, monkeypatch):
    """A module that uses torch without importing it fails there, though the server imported torch."""
    (tmp_path / "uses_torch_unimported.py").write_text("x = torch.zeros(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the new process takes this process's sys.path
    exitcode, failure = _import_alone(new_processes, "uses_torch_unimported", tmp_path)
    assert exitcode == 1 and "NameError: name 'torch' is not defined" in failure, failure


def test_remote_code_unit_imports_only_itself_relatively():
    """The files copied into every checkpoint (REMOTE_CODE_MODULES) import no other module of the package, and
    each other only as `from .module import Name` (the one form transformers' remote code resolves)."""
    unit = {f"{PACKAGE}.{module}" for module in transformers_sharegpt4v.REMOTE_CODE_MODULES}
    graph = import_graph()
    for name in sorted(unit):
        assert graph[name] <= unit, f"{name} imports {sorted(graph[name] - unit)}"
        for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and f"{PACKAGE}.{node.module}" in unit, ast.unparse(node)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                assert not (getattr(node, "module", None) or "").startswith(PACKAGE), ast.unparse(node)
                assert not any(alias.name.startswith(PACKAGE) for alias in node.names), ast.unparse(node)
