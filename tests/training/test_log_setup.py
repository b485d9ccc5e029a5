"""The eqinfo commands' logging."""
import logging

from training import log_setup


def test_eqinfo_info_lines_show_and_library_chatter_does_not(capfd):
  import orbax.checkpoint  # pylint: disable=import-outside-toplevel,unused-import
  root = logging.getLogger()
  for handler in list(root.handlers):  # as in a fresh process, where importing orbax
    root.removeHandler(handler)        # leaves absl's root handler at WARNING
  root.setLevel(logging.WARNING)
  logging.basicConfig()
  log_setup.configure()
  logging.info("resuming at step 3")
  logging.getLogger("absl").info("Saving checkpoint at step 3")
  err = capfd.readouterr().err
  assert " INFO resuming at step 3" in err
  assert "Saving checkpoint" not in err
