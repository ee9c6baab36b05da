"""The Streamlit dashboard: ``streamlit run dashboard.py`` (the repo-root entry file calls ``app.run()``).

One module per page (``machine``, ``specs``, ``recommender``, ``history``, ``fleet``), ``charts`` for every
chart and the one palette, ``common`` for what the pages share.  Widgets and layout only: every number
comes from the library (catalog, probe, recommend, store), shaped by ``advisor.dashboard_data``.
The only part of ``advisor`` that imports streamlit; nothing outside it imports this package.
"""
