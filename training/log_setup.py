"""Logging of the eqinfo commands: their own INFO lines, the libraries' warnings."""
import logging

# Loggers of libraries that speak at INFO on every step or checkpoint.
QUIET = ("absl", "jax", "orbax", "tensorflow", "grain")
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
HANDLER = "eqinfo"  # the name of the root handler `configure` installs


def configure() -> None:
  """Shows eqinfo's INFO lines on stderr (resumes, validation, what was written).

  Importing orbax logs through absl, which installs a root handler at WARNING
  when there is none, so a plain `logging.basicConfig` would do nothing: the
  root's handlers are replaced by one named `HANDLER`, and the libraries'
  loggers stay at WARNING (orbax logs some 70 INFO lines per checkpoint).
  """
  handler = logging.StreamHandler()
  handler.setFormatter(logging.Formatter(LOG_FORMAT))
  handler.set_name(HANDLER)
  logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
  for name in QUIET:
    logging.getLogger(name).setLevel(logging.WARNING)
