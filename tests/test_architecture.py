"""The package's shape: imports point down the layers and never form a cycle.

Built from the source text (``ast``), not from what happens to be imported at run
time, so a cycle through a function-level or ``TYPE_CHECKING`` import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dcmrecv"

#: Layers from the bottom up: a module may import from its own layer and the ones
#: below, never from a layer above (README, "Development").
LAYERS = [
    {
        "exitcodes",
        "status",
        "implementation",
        "boundedread",
        "tlsconfig",
        "events",
        "logs",
        "negotiation",
    },
    {"storage", "state", "commitment"},
    {"config"},
    {"wire"},
    {"ops"},
    {"commands", "__main__", "__init__"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The dcmrecv modules ``path`` imports, resolved to module names."""
    tree = ast.parse(path.read_text(), str(path))
    modules = _all_modules()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name in modules:
                found.add(name)
    own = _module_name(path)
    found.discard(own)
    # "from dcmrecv.wire import pdu" names both the package and the module; the
    # package's __init__ holds only a docstring, so count the module alone.
    return {name for name in found if not any(m.startswith(name + ".") for m in found)} or found


def _all_modules() -> set[str]:
    return {_module_name(p) for p in PACKAGE.rglob("*.py")}


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    for index, layer in enumerate(LAYERS):
        if key in layer:
            return index
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_no_import_cycle() -> None:
    assert find_cycle(_graph()) is None


def test_cycle_finder_sees_an_indirect_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_type_checking_imports_count() -> None:
    """An import under ``if TYPE_CHECKING:`` is an edge of the graph like any other."""
    path = PACKAGE / "config.py"
    assert "dcmrecv.storage.model" in _imports(path)


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{module} ({LAYERS_NAMES[_layer(module)]}) imports {target} "
        f"({LAYERS_NAMES[_layer(target)]})"
        for module, targets in sorted(_graph().items())
        for target in sorted(targets)
        if target != "dcmrecv" and _layer(target) > _layer(module)
    ]
    assert upward == []


LAYERS_NAMES = ["/".join(sorted(layer)) for layer in LAYERS]


#: The association's driver: socket, TLS, timers and threads only (issue 19).  The
#: protocol (wire/protocol.py) and the service (wire/scp.py) hold the rest.
DRIVER = PACKAGE / "wire" / "association.py"
DRIVER_MAX_LINES = 400


def test_the_association_driver_stays_small() -> None:
    lines = len(DRIVER.read_text().splitlines())
    assert lines <= DRIVER_MAX_LINES, (
        f"{DRIVER.name} has {lines} lines: move protocol rules to wire/protocol.py and "
        "service decisions to wire/scp.py"
    )


def test_the_protocol_object_does_no_io() -> None:
    """wire/protocol.py is sans I/O: no sockets, clocks, threads, files or logging."""
    tree = ast.parse((PACKAGE / "wire" / "protocol.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not imported & {"socket", "ssl", "time", "threading", "os", "logging", "select"}


# --- one place per option -----------------------------------------------------------------

#: The class of an option row (dcmrecv.commands.option).
ROW_CLASS = "Option"


def option_definitions(sources: dict[str, str]) -> dict[str, set[str]]:
    """Long option name -> the modules that define it.

    An option is defined where a row constructor is called with its long name (a
    string literal starting with ``--``) as the first argument.  A row constructor is
    the row class itself, or a function of the same module annotated to return one
    (``_prefer(...)`` in the option table).  Reading an option (``cmdline.last("--fork")``)
    is not a definition.
    """
    found: dict[str, set[str]] = {}
    for module, text in sources.items():
        tree = ast.parse(text)
        constructors = {ROW_CLASS}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.returns is not None:
                returned = node.returns
                if isinstance(returned, ast.Constant):  # a string annotation
                    returned = ast.parse(str(returned.value), mode="eval").body
                if isinstance(returned, ast.Name) and returned.id == ROW_CLASS:
                    constructors.add(node.name)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            first = node.args[0]
            if (
                name in constructors
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and first.value.startswith("--")
            ):
                found.setdefault(first.value, set()).add(module)
    return found


def _package_sources() -> dict[str, str]:
    return {_module_name(p): p.read_text() for p in PACKAGE.rglob("*.py")}


def test_every_option_is_defined_in_one_module() -> None:
    definitions = option_definitions(_package_sources())
    # The finder sees the rows: plain ones and those made by a helper.
    assert definitions["--acse-timeout"] == {"dcmrecv.commands.options"}
    assert definitions["--prefer-little"] == {"dcmrecv.commands.options"}
    assert len(definitions) > 140
    twice = {long: sorted(modules) for long, modules in definitions.items() if len(modules) > 1}
    assert twice == {}


def test_option_finder_sees_a_second_definition() -> None:
    table = 'Option("--fork", None, "fork")\ndef row(x) -> "Option": ...\nrow("--ignore")\n'
    other = 'from x import Option\nOption("--fork", None, "again")\ncmdline.last("--ignore")\n'
    assert option_definitions({"table": table, "other": other}) == {
        "--fork": {"table", "other"},
        "--ignore": {"table"},
    }
