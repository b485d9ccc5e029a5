"""The packages' import graph: no circles, and nothing imports upwards (docs/DESIGN.md).

Every import counts, at the top of a module or inside a function.
"""
import ast
import pathlib

from tests.conftest import REPO

PACKAGES = ("compressor", "training", "pipelines")
#: what each package may import among the project's packages
ALLOWED = {"compressor": {"compressor"}, "training": {"compressor", "training"},
           "pipelines": {"compressor", "training", "pipelines"}}


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The project modules that `path` imports (`from pkg import mod` names the module)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
    else:
      continue
    for name in names:
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name:
        found.add(name)
  return found


def import_graph() -> dict[str, set[str]]:
  paths = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
  modules = {module_name(p) for p in paths}
  graph = {}
  for path in paths:
    name = module_name(path)
    graph[name] = {m for m in project_imports(path, modules)
                   if m != name and not name.startswith(m + ".")}  # a package's own __init__
  return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import circle, or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_no_import_circles():
  assert cycle(import_graph()) is None, " -> ".join(cycle(import_graph()))


def test_nothing_imports_upwards():
  wrong = sorted(f"{a} imports {b}" for a, deps in import_graph().items() for b in deps
                 if b.split(".")[0] not in ALLOWED[a.split(".")[0]])
  assert not wrong, wrong


def test_the_checker_finds_a_circle():
  assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert cycle({"a": {"b"}, "b": set()}) is None


def test_every_package_lists_its_files():
  """Each package's __init__.py names every module and subpackage it holds (docs/DESIGN.md)."""
  for init in [p for package in PACKAGES for p in (REPO / package).rglob("__init__.py")]:
    listing = init.read_text(encoding="utf-8")
    for path in init.parent.iterdir():
      if path.name in ("__init__.py", "__pycache__"):
        continue
      if path.suffix == ".py":
        assert path.name in listing, f"{init.relative_to(REPO)} does not list {path.name}"
      elif (path / "__init__.py").is_file():
        assert f"{path.name}/" in listing, f"{init.relative_to(REPO)} does not list {path.name}/"
