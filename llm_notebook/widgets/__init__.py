"""llm-notebook's widgets. Each is a thin anywidget over the kernel's Session.

Importing this package stays cheap: widget modules (and anywidget with them) load on first use.
"""
