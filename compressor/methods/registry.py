"""Methods by the paper's names: `get_method("equal_info_ac[b=16,v=65k]", model=m1)`."""
import re

from compressor import constants

SPEC_FORMS = (
    "bytes",
    "gzip[v=256]", "gzip[v=65k]",
    "ac[v=256]", "ac[v=65k]",
    "static_ac[v=256]", "static_ac[v=65k]",
    "equal_info_ac[b=B,v=V] with B in {%s} and V in {256, 65k}"
    % ", ".join(str(b) for b in constants.WINDOW_BITS),
    "sentencepiece[path=MODEL]",
)

_SPEC = re.compile(r"^(?P<name>[a-z_]+)(?:\[(?P<args>.*)\])?$", re.DOTALL)
_SPACES = re.compile(r"\s*([\[\],=])\s*")  # around the spec's own punctuation only
_WHOLE_VALUE = ("path",)  # a file name: everything after "path=", commas and spaces included


def _bad(spec: str, why: str) -> ValueError:
  return ValueError(f"bad method spec {spec!r} ({why}); valid forms: " + "; ".join(SPEC_FORMS))


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
  """Splits "name[k=v,...]" into ("name", {"k": "v"}).

  Raises:
    ValueError: on malformed specs, listing the valid forms.
  """
  if not isinstance(spec, str):
    raise _bad(str(spec), "not of the form name[key=value,...]")
  name, bracket, rest = spec.strip().partition("[")
  key = rest.partition("=")[0].strip()
  if bracket and key in _WHOLE_VALUE and rest.rstrip().endswith("]"):
    value = rest.partition("=")[2].rstrip()[:-1].strip()
    if not _SPEC.match(name.strip()) or not value:
      raise _bad(spec, f"argument {rest.rstrip()[:-1]!r}")
    return name.strip(), {key: value}
  match = _SPEC.match(_SPACES.sub(r"\1", spec.strip()))
  if not match:
    raise _bad(spec, "not of the form name[key=value,...]")
  args = {}
  for part in filter(None, (match.group("args") or "").split(",")):
    key, sep, value = part.partition("=")
    if not sep or not value or key in args:
      raise _bad(spec, f"argument {part!r}")
    args[key] = value
  return match.group("name"), args


def _token_bits(spec, args) -> int:
  v = args.get("v")
  if v not in constants.TOKEN_BITS:
    raise _bad(spec, "v must be 256 or 65k")
  return constants.TOKEN_BITS[v]


def _expect_keys(spec, args, keys):
  if set(args) != set(keys):
    raise _bad(spec, f"expected arguments {sorted(keys)}, got {sorted(args)}")


def get_method(spec: str, model=None, vocabulary=None):
  """Builds the method named by `spec`.

  Args:
    spec: a paper-style name, see `SPEC_FORMS`.
    model: the probability model for `ac` and `equal_info_ac` (M1, or a
      `ContextModel` as a stand-in) and the `UnigramModel` for `static_ac`.
    vocabulary: for `equal_info_ac[b=16,...]`, the model's `WindowVocabulary`:
      code by longest match and lookup (the model may then be None).

  Raises:
    ValueError: on a bad spec or a missing model, saying what to pass.
  """
  name, args = parse_spec(spec)
  if vocabulary is not None and name != "equal_info_ac":
    raise _bad(spec, "a window vocabulary codes equal_info_ac[b=16,...] only")
  if name == "bytes":
    _expect_keys(spec, args, [])
    from compressor.methods.bytes_method import BytesMethod
    return BytesMethod()
  if name == "gzip":
    _expect_keys(spec, args, ["v"])
    from compressor.methods.gzip_method import GZipMethod
    return GZipMethod(_token_bits(spec, args))
  if name in ("ac", "static_ac"):
    _expect_keys(spec, args, ["v"])
    from compressor.methods.arithmetic import ACMethod, StaticACMethod
    cls = ACMethod if name == "ac" else StaticACMethod
    return cls(model, _token_bits(spec, args))
  if name == "equal_info_ac":
    _expect_keys(spec, args, ["b", "v"])
    if not args["b"].isdigit() or int(args["b"]) not in constants.WINDOW_BITS:
      raise _bad(spec, f"b must be one of {constants.WINDOW_BITS}")
    from compressor.methods.equal_info import EqualInfoACMethod
    return EqualInfoACMethod(model, int(args["b"]), _token_bits(spec, args),
                             vocabulary=vocabulary)
  if name == "sentencepiece":
    _expect_keys(spec, args, ["path"])
    from compressor.methods.sentencepiece_method import SentencePieceMethod
    return SentencePieceMethod(args["path"])
  raise _bad(spec, f"unknown method {name!r}")
