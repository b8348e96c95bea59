"""The Hydra configs, shipped as the package ``compiler.conf`` (Hydra's ``pkg://compiler.conf`` search path needs
this file; see compiler/resources.py). No code lives here."""
