# `make lab` points IPYTHONDIR at etc/ipython: keep the IPython history out of the repository (no history.sqlite).
c = get_config()  # noqa: F821 (defined by IPython in config files)
c.HistoryManager.enabled = False
