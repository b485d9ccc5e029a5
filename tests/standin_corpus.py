"""A stand-in for the shared web text, built from English that ships with Python.

A clone without `../shared/data/webtext` still runs every test: the tests'
corpus is then written in C4's layout (gzip JSON-lines with a `text` field,
`train/` and `validation/`) from

- train: the docstrings of the standard library's modules, classes and
  functions (at least MIN_CHARS characters each), read with `ast` from the
  source files, never imported;
- validation: Python's reference documentation (`pydoc_data.topics`), each
  topic cut into documents of a few paragraphs.

It is a function of the Python installation, so it is the same on every
machine with the same Python.
"""
import ast
import gzip
import json
import pathlib
import sysconfig

MIN_CHARS = 200
TRAIN_FILES = 3
DOC_CHARS = 800  # validation documents: paragraphs joined up to about this many characters


def stdlib_docstrings() -> list[str]:
  """Docstrings of the standard library, files in name order, then in source order."""
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  docs = []
  for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
    if path.parent.name in ("test", "tests", "idlelib") or "test" in path.name:
      continue
    try:
      tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
      continue
    nodes = [tree] + [n for n in ast.walk(tree)
                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    docs += [d for d in map(ast.get_docstring, nodes) if d and len(d) >= MIN_CHARS]
  return docs


def reference_documents() -> list[str]:
  """Python's reference topics, each cut at paragraph ends into documents of ~DOC_CHARS."""
  from pydoc_data import topics  # pylint: disable=import-outside-toplevel
  docs = []
  for key in sorted(topics.topics):
    current = ""
    for paragraph in topics.topics[key].split("\n\n"):
      current = f"{current}\n\n{paragraph}" if current else paragraph
      if len(current) >= DOC_CHARS:
        docs.append(current)
        current = ""
    if current.strip():
      docs.append(current)
  return docs


def _write(path: pathlib.Path, texts: list[str]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with gzip.GzipFile(path, "wb", mtime=0) as f:
    for text in texts:
      f.write((json.dumps({"text": text}) + "\n").encode())


def write(root: pathlib.Path) -> pathlib.Path:
  """Writes the stand-in under `root` (train/ and validation/); returns `root`."""
  train = stdlib_docstrings()
  per_file = -(-len(train) // TRAIN_FILES)
  for i in range(TRAIN_FILES):
    _write(root / "train" / f"python-stdlib-docstrings.{i:05d}.jsonl.gz",
           train[i * per_file:(i + 1) * per_file])
  _write(root / "validation" / "python-reference-topics.00000.jsonl.gz", reference_documents())
  return root
