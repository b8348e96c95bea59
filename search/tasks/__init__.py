"""The tasks layer: every `task=` entry point of `python -m compiler` (compile, train, search (every strategy, DARTS
too), profile_ops) and the Hydra callbacks (sweep_summary). The top layer: nothing in compiler/ or search/ imports
it; the configs name its functions (`task._target_`). A regular package (not a namespace one) so that import-linter
sees its modules."""
