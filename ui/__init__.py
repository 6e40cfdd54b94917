"""Streamlit helpers shared by `app.py` and `pages/` (UI only; logic lives in `core/`)."""
