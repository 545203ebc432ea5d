"""The ``wps_sam`` package has no import cycle, counting imports inside functions too.

The graph is read from the source (``ast``), not from ``sys.modules``: a node is a module of the
package (a package is its ``__init__``), an edge ``a -> b`` is an ``import``/``from ... import``
in ``a`` (at module level, in a function, under ``if``/``try``) of the package module ``b``; ``from
p import n`` points at ``p.n`` when that is a module, else at ``p``. The implicit import of a
parent package (importing ``p.m`` runs ``p/__init__.py``) is not an edge, as in import-linter and
pydeps: otherwise every module below a package ``__init__`` that imports its children would be
on a cycle.
"""

import ast
import os

import pytest

PACKAGE = "wps_sam"
ROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "projects", "WPSSAM"
)


def package_modules(root=ROOT, package=PACKAGE):
    """{dotted module name: (path, is a package)} of every .py file under ``root/package``."""
    modules = {}
    for folder, dirs, files in os.walk(os.path.join(root, package)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            dotted = os.path.relpath(path, root)[: -len(".py")].replace(os.sep, ".")
            is_package = dotted.endswith(".__init__")
            if is_package:
                dotted = dotted[: -len(".__init__")]
            modules[dotted] = (path, is_package)
    return modules


def import_graph(modules, package=PACKAGE):
    """{module: {(imported module, line)}} over the modules of the package."""
    graph = {}
    for name, (path, is_package) in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), filename=path)
        here = name if is_package else name.rsplit(".", 1)[0]  # what "." means in this module
        edges = set()
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = here.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    source = ".".join(parts + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [
                    f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
                    for a in node.names
                ]
            for target in targets:
                if target.split(".")[0] != package:
                    continue
                while target not in modules and "." in target:  # import p.m.attr -> p.m
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    edges.add((target, node.lineno))
        graph[name] = edges
    return graph


def find_cycles(graph):
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _describe(graph, cycle):
    members = set(cycle)
    return "\n".join(
        f"    {a} -> {b} (line {line})"
        for a in cycle
        for b, line in sorted(graph[a])
        if b in members
    )


def test_wps_sam_has_no_import_cycle():
    graph = import_graph(package_modules())
    assert len(graph) > 40 and "wps_sam.data.embedding_cache" in graph
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in wps_sam (function-level imports count):\n" + "\n".join(
        _describe(graph, c) for c in cycles
    )


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import b  # noqa\n")
    (pkg / "a.py").write_text("def f():\n    from .sub.b import g\n    return g\n")
    (pkg / "sub" / "b.py").write_text("import pkg.c\n")
    (pkg / "c.py").write_text("if True:\n    from pkg import a\n")
    graph = import_graph(package_modules(str(tmp_path), "pkg"), "pkg")
    assert {t for t, _ in graph["pkg.a"]} == {"pkg.sub.b"}
    assert {t for t, _ in graph["pkg.sub"]} == {"pkg.sub.b"}
    assert find_cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    (pkg / "c.py").write_text("")
    assert find_cycles(import_graph(package_modules(str(tmp_path), "pkg"), "pkg")) == []


def test_data_registration_does_not_import_the_generator():
    """Registering the datasets needs no generator: data/ reaches synthetic/ only when a synthetic
    split is loaded (its version check), never at module level."""
    modules = package_modules()
    for name, (path, _) in modules.items():
        if not name.startswith(f"{PACKAGE}.data"):
            continue
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in tree.body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.module and "synthetic" in node.module:
                if node.module.endswith("synthetic_parts_classes"):
                    continue
                pytest.fail(f"{path}:{node.lineno} imports {node.module} at module level")
            if isinstance(node, ast.Import) and any("synthetic." in a.name for a in node.names):
                pytest.fail(f"{path}:{node.lineno} imports the generator at module level")
