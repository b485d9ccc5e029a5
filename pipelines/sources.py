"""Reading a corpus inside Beam: one read task (file, TFDS chunk) per element.

What a corpus spec means, how a line becomes a document and when it is dropped
is `compressor/corpus.py`'s, the reader train-m1 and codec use too. This module
spreads its read tasks over workers and routes `Dropped` records to the
`errors` output. Every document keeps its position (task index, line index), so
the groups of 128 documents downstream are the same whatever the runner's
parallelism.
"""
import apache_beam as beam

from compressor import corpus

ERRORS = "errors"
_NAMESPACE = "eqinfo"


class ReadTaskFn(beam.DoFn):
  """Reads one task (file or TFDS chunk): Documents out, Dropped to the `errors` output."""

  def __init__(self, spec: corpus.InputSpec, text_field: str = "text",
               max_docs: int | None = None, tfds_data_dir: str | None = None):
    super().__init__()
    self._spec = spec
    self._text_field = text_field
    self._max_docs = max_docs
    self._tfds_data_dir = tfds_data_dir
    self._builder = None
    self._docs = beam.metrics.Metrics.counter(_NAMESPACE, "documents_read")
    self._bytes = beam.metrics.Metrics.counter(_NAMESPACE, "document_bytes_read")
    self._bad = beam.metrics.Metrics.counter(_NAMESPACE, "inputs_dropped_at_read")
    self._bytes_in = beam.metrics.Metrics.counter(_NAMESPACE, "bytes_in")

  def setup(self):
    self._builder = corpus.tfds_builder(self._spec, self._tfds_data_dir)

  def process(self, task):
    index, locator = task
    for item in corpus.read_task(self._spec, index, locator, self._text_field, self._max_docs,
                                 self._builder):
      if isinstance(item, corpus.Dropped):
        self._bad.inc()
        self._bytes_in.inc(item.num_bytes)
        beam.metrics.Metrics.counter(_NAMESPACE, f"dropped_{item.reason}").inc()
        yield beam.pvalue.TaggedOutput(ERRORS, item)
      else:
        self._docs.inc()
        self._bytes.inc(len(item.data))
        yield item


class ReadDocuments(beam.PTransform):
  """PBegin -> {"documents": Document, "errors": Dropped} for a resolved corpus spec."""

  def __init__(self, spec: corpus.InputSpec, text_field: str = "text", max_docs_per_file=None,
               tfds_data_dir=None):
    super().__init__()
    self._spec = spec
    self._fn = ReadTaskFn(spec, text_field, max_docs_per_file, tfds_data_dir)

  def expand(self, pbegin):
    outputs = (
        pbegin
        | "ListTasks" >> beam.Create(list(self._spec.tasks))
        | "SpreadTasks" >> beam.Reshuffle()
        | "ReadTask" >> beam.ParDo(self._fn).with_outputs(ERRORS, main="documents"))
    return {"documents": outputs.documents, "errors": outputs[ERRORS]}
