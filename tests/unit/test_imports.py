"""The runtime package's import graph: no cycle, and no import hidden in a function without a
reason written beside it."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "wa_sessions"
ROOT = Path(__file__).resolve().parents[2]
#: A function-level import must say why on its own line or the line above, with this word.
JUSTIFICATION = "imported here:"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in (
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    )


ImportNode = ast.Import | ast.ImportFrom


def imports_of(path: Path) -> Iterator[tuple[ImportNode, bool]]:
    """Every import statement that runs (``if TYPE_CHECKING:`` blocks excluded), with whether
    it sits inside a function."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ImportNode, bool]]:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from walk(child, nested)

    yield from walk(ast.parse(path.read_text(), str(path)), False)


def targets(node: ImportNode, importer: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package's modules one import statement loads (``from a import b`` loads ``a.b``
    when ``b`` is a module, else ``a``)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    base = node.module or ""
    if node.level:
        anchor = importer.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base]) if base else ".".join(anchor)
    found = set()
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        if candidate in modules:
            found.add(candidate)
        elif base in modules:
            found.add(base)
    return found


def with_packages(target: str, importer: str, modules: set[str]) -> set[str]:
    """``target`` and the packages Python initialises before it (``a.b`` for ``a.b.c``), less
    those the importer sits in (already initialised when it runs)."""
    own = {importer.rsplit(".", n)[0] for n in range(importer.count(".") + 1)}
    parts = target.split(".")
    chain = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    return {name for name in chain - own if name in modules}


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """Edges between the package's modules (an import of ``a.b.c`` also runs ``a.b``'s
    ``__init__``), and the unexplained function-level imports."""
    modules = package_modules()
    names = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    hidden: list[str] = []
    for name, path in modules.items():
        lines = path.read_text().splitlines()
        for node, in_function in imports_of(path):
            found = targets(node, name, path.name == "__init__.py", names)
            for target in found:
                graph[name] |= with_packages(target, name, names)
            if in_function and found:
                around = " ".join(lines[max(0, node.lineno - 2) : node.end_lineno or node.lineno])
                if JUSTIFICATION not in around.lower():
                    hidden.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return graph, hidden


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that returns to its start, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    """No module of ``wa_sessions`` imports itself back through others, at module or function
    level, so import order never matters."""
    graph, _ = import_graph()
    assert find_cycle(graph) is None


def test_function_level_imports_say_why() -> None:
    """An import of the package's own modules inside a function carries an ``imported here:``
    comment giving its reason (an optional SDK loaded only when configured)."""
    _, hidden = import_graph()
    assert hidden == []


def test_the_cycle_finder_sees_a_two_module_cycle() -> None:
    """The check itself: a cycle through two modules is reported as its path."""
    assert find_cycle({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


#: The domain: what a session is, what is legal, what a drain decides, the store roles, and the
#: in-memory store the handler tests run on. None of it may need Redis.
DOMAIN = (
    "wa_sessions.statemachine.models",
    "wa_sessions.statemachine.lifecycle",
    "wa_sessions.statemachine.identity",
    "wa_sessions.statemachine.entries",
    "wa_sessions.statemachine.steps",
    "wa_sessions.statemachine.drainrules",
    "wa_sessions.statemachine.sessionrules",
    "wa_sessions.statemachine.ports",
    "wa_sessions.statemachine.memory",
    "wa_sessions.orders.merge",
    "wa_sessions.orders.models",
    "wa_sessions.orders.daily_cap",
)


def test_the_domain_loads_without_redis_or_any_adapter() -> None:
    """Importing every domain module in a fresh interpreter loads neither the redis client nor
    the Redis adapter, the web layer or the workers."""
    code = (
        "import sys\n"
        f"for name in {DOMAIN!r}: __import__(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'redis' or m.startswith(("
        "'redis.', 'wa_sessions.statemachine.redis', 'wa_sessions.webhook', "
        "'wa_sessions.workers', 'dramatiq', 'openai', 'twilio')))\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout
