"""Reading a corpus inside Beam: each read task (file, TFDS chunk) becomes the inputs of
its shards, as it is read.

What a corpus spec means, how a line becomes a document and when it is dropped
is `compressor/corpus.py`'s, the reader train-m1 and codec use too. This module
spreads the read tasks over workers and, while it reads one, forms its groups
of `docs_per_group` documents and its shard inputs of `groups_per_shard` groups
(docs/DESIGN.md, "Records and shard directories"):

  group g of task t: the documents with line index in [128 g, 128 (g + 1))
  shard s of task t: groups [G s, G (s + 1)), G = groups_per_shard

Both depend only on line indices, so they are the same whatever the runner's
parallelism or bundling, and no shuffle of documents is needed. A reader holds
one shard input at a time. Documents that are empty or over `max_doc_bytes`
and lines that are not documents go to the `errors` output as `Dropped`.
"""
from typing import Iterable, Iterator, NamedTuple

import apache_beam as beam

from compressor import corpus
from compressor.corpus import Document, Dropped

ERRORS = "errors"
_NAMESPACE = "eqinfo"


class DocGroup(NamedTuple):
  """Up to `docs_per_group` consecutive documents of one file, in line order."""
  file_index: int
  group_index: int
  sources: tuple[str, ...]
  docs: tuple[bytes, ...]


class ShardInput(NamedTuple):
  """The documents of one shard: groups [G s, G (s + 1)) of one read task.

  Attributes:
    file_index: the read task (file, TFDS chunk).
    shard_index: s, the shard's place among the task's shards.
    groups: its groups in order (those with no document left out).
    document_symbols: bytes + EOS of every document read in these groups,
      screened-out ones included (what the shard brings to bytes in).
  """
  file_index: int
  shard_index: int
  groups: tuple[DocGroup, ...]
  document_symbols: int

  def __repr__(self):
    return (f"ShardInput(f{self.file_index:05d}-s{self.shard_index:05d}, "
            f"<{len(self.groups)} groups>)")


def screen(doc: Document, max_doc_bytes: int | None) -> Dropped | None:
  """The Dropped record of an empty document or one over `max_doc_bytes`; None to keep it."""
  size = len(doc.data) + 1  # EOS counts as one symbol
  if not doc.data:
    return Dropped(doc.source, "empty_document", size, "screen", "no bytes")
  if max_doc_bytes is not None and len(doc.data) > max_doc_bytes:
    return Dropped(doc.source, "too_large", size, "screen",
                   f"{len(doc.data)} bytes > --max_doc_bytes {max_doc_bytes}")
  return None


def _group(file_index: int, group_index: int, docs: list[Document]) -> DocGroup:
  return DocGroup(file_index, group_index, tuple(d.source for d in docs),
                  tuple(d.data for d in docs))


def shard_inputs(items: Iterable[Document | Dropped], file_index: int, docs_per_group: int,
                 groups_per_shard: int,
                 max_doc_bytes: int | None = None) -> Iterator[ShardInput | Dropped]:
  """One task's documents (in line order) -> its ShardInputs, with Dropped records between.

  Args:
    items: `corpus.read_task`'s output for task `file_index`.
    docs_per_group, groups_per_shard: the group and shard sizes (see the module doc).
    max_doc_bytes: documents larger than this are dropped (`screen`).

  Yields:
    Dropped records as they come, and each ShardInput once its last line has
    passed (so at most one shard's documents are held).
  """
  docs_per_shard = docs_per_group * groups_per_shard
  shard, groups, group, symbols = None, [], [], 0

  def flush_group():
    if group:
      groups.append(_group(file_index, group[0].doc_index // docs_per_group, group))

  for item in items:
    if isinstance(item, Dropped):
      yield item
      continue
    if shard is not None and item.doc_index // docs_per_shard != shard:
      flush_group()
      yield ShardInput(file_index, shard, tuple(groups), symbols)
      groups, group, symbols = [], [], 0
    elif group and item.doc_index // docs_per_group != group[0].doc_index // docs_per_group:
      flush_group()
      group = []
    shard = item.doc_index // docs_per_shard
    symbols += len(item.data) + 1
    dropped = screen(item, max_doc_bytes)
    if dropped is not None:
      yield dropped
    else:
      group.append(item)
  if shard is not None:
    flush_group()
    yield ShardInput(file_index, shard, tuple(groups), symbols)


class ReadShardInputsFn(beam.DoFn):
  """(index, locator) of a read task -> its ShardInputs; Dropped to the `errors` output."""

  def __init__(self, spec: corpus.InputSpec, docs_per_group: int, groups_per_shard: int,
               text_field: str = "text", max_docs: int | None = None,
               max_doc_bytes: int | None = None, tfds_data_dir: str | None = None):
    super().__init__()
    self._spec = spec
    self._docs_per_group = docs_per_group
    self._groups_per_shard = groups_per_shard
    self._text_field = text_field
    self._max_docs = max_docs
    self._max_doc_bytes = max_doc_bytes
    self._tfds_data_dir = tfds_data_dir
    self._builder = None
    self._docs = beam.metrics.Metrics.counter(_NAMESPACE, "documents_read")
    self._bytes_in = beam.metrics.Metrics.counter(_NAMESPACE, "bytes_in")

  def setup(self):
    self._builder = corpus.tfds_builder(self._spec, self._tfds_data_dir)

  def process(self, task):
    index, locator = task
    items = corpus.read_task(self._spec, index, locator, self._text_field, self._max_docs,
                             self._builder)
    for out in shard_inputs(items, index, self._docs_per_group, self._groups_per_shard,
                            self._max_doc_bytes):
      if isinstance(out, Dropped):
        if out.stage == "read":
          self._bytes_in.inc(out.num_bytes)
        beam.metrics.Metrics.counter(_NAMESPACE, f"dropped_{out.reason}").inc()
        yield beam.pvalue.TaggedOutput(ERRORS, out)
      else:
        self._docs.inc(sum(len(g.docs) for g in out.groups))
        self._bytes_in.inc(out.document_symbols)
        yield out


class ReadShardInputs(beam.PTransform):
  """PBegin -> {"shards": ShardInput, "errors": Dropped} for a resolved corpus spec.

  `spread`: a shuffle of the shard inputs after reading, so that a runner with
  many workers (Dataflow) codes the shards of one file on many of them. Without
  it a worker codes the shards of the files it reads, one at a time, which keeps
  a local runner's memory bounded (its shuffles hold all their data).
  """

  def __init__(self, spec: corpus.InputSpec, docs_per_group: int, groups_per_shard: int,
               text_field: str = "text", max_docs_per_file=None, max_doc_bytes=None,
               tfds_data_dir=None, spread: bool = False):
    super().__init__()
    self._spec = spec
    self._spread = spread
    self._fn = ReadShardInputsFn(spec, docs_per_group, groups_per_shard, text_field,
                                 max_docs_per_file, max_doc_bytes, tfds_data_dir)

  def expand(self, pbegin):
    outputs = (
        pbegin
        | "ListTasks" >> beam.Create(list(self._spec.tasks))
        | "SpreadTasks" >> beam.Reshuffle()
        | "ReadTask" >> beam.ParDo(self._fn).with_outputs(ERRORS, main="shards"))
    shards = outputs.shards
    if self._spread:
      shards = shards | "SpreadShards" >> beam.Reshuffle()
    return {"shards": shards, "errors": outputs[ERRORS]}
