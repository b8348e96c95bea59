"""DARTS: differentiable architecture search over a space's supernet (see task.py for the whole run)."""
