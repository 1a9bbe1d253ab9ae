# `make lab` points IPYTHONDIR here: every kernel started from JupyterLab reloads edited helpers modules
# automatically (edit src/helpers/*.py, re-run the cell). Report runs and tests do not use this profile.
# Loaded once, here only (a notebook that also ran %load_ext autoreload printed "already loaded").
ip = get_ipython()  # noqa: F821 (defined by IPython in startup files)
if ip is not None and "autoreload" not in ip.extension_manager.loaded:
    ip.run_line_magic("load_ext", "autoreload")
    ip.run_line_magic("autoreload", "2")
