"""Documents from corpora, as (source, text) pairs, outside Beam."""


def builtin_pydoc_documents() -> list[tuple[str, str]]:
  """Returns Python's own documentation topics (`pydoc_data.topics`), sorted by name.

  About 460 KB of English prose that ships with every Python: the corpus of
  `builtin:pydoc`, which needs no download.

  Returns:
    [(source, text)] with source "builtin:pydoc/<topic>".
  """
  from pydoc_data import topics  # pylint: disable=import-outside-toplevel
  return [(f"builtin:pydoc/{name}", topics.topics[name]) for name in sorted(topics.topics)]
