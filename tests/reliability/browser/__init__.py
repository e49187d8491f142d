"""Reliability suites that need the widgets in a real JupyterLab (Chromium via Playwright)."""
