"""Altruism Lab core: datasets, recipes, training, evaluation, registry and builders.

Everything here is callable without Streamlit; `app.py` and `pages/` only call into it.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
