"""The read-only web dashboard: `fluxlora dashboard` (see app.py)."""
