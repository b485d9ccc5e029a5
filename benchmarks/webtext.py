"""Where the benchmarks read real C4 text by default, as the tests do: `EQINFO_WEBTEXT`, else
`../shared/data/webtext` beside the checkout (gzip JSON-lines in C4's layout: train/,
validation/). Every benchmark also takes `--data DIR`."""
import os
import pathlib

DEFAULT_DATA = pathlib.Path(os.environ.get(
    "EQINFO_WEBTEXT", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "webtext"))
