"""Code that runs outside the compiler: shipped as a file inside every generated profile.py and imported by the
in-process profiler (see measure.py)."""
