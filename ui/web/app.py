"""The script Streamlit runs for the web page (see ui/web/page.py); `rag ui` starts it."""

import os
import sys

from ui.web.page import main

os.umask(0o077)  # whoever starts Streamlit: what the page writes is the service's alone
main(sys.argv[1:])
