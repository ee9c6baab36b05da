"""gpu-advisor dashboard: ``streamlit run dashboard.py``.

A thin entry file: the pages live in ``advisor/dashboard/`` (one module per page, ``charts.py`` for
every chart).  Each page works without a GPU; a library piece that is missing or raises becomes a
notice on the page, never a traceback.
"""

from advisor.dashboard.app import run

run()
