"""``ci-connector dashboard``: a small local web page for operators (server-rendered, no CDN).

:mod:`.synclog` records every sync (a JSON-lines file beside the ledgers); :mod:`.data`
gathers held lines, SLA risk, the threshold cycle and the last syncs from the same sources as
``status``, ``sla`` and ``threshold``; :mod:`.render` turns that into HTML with inline SVG/CSS
charts (Jinja2); :mod:`.server` serves it on 127.0.0.1 with the standard library's
``http.server``. Importing this package imports nothing heavy (``sync`` uses the log).
"""
