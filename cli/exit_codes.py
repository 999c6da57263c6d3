"""Exit codes of the ``hsiseg`` command (light: the console script's entry imports it before anything else)."""

USER_ERROR_EXIT_CODE = 2  # bad input, one line on stderr
INTERRUPTED_EXIT_CODE = 130  # Ctrl-C (the shell's code for an interrupt)
