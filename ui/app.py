"""The script Streamlit runs for the web page (see ui/page.py); `rag ui` starts it."""

import sys

from ui.page import main

main(sys.argv[1:])
