"""The web page: Streamlit's script (app.py), the page itself (page.py) and what makes text safe to show
(render.py)."""
