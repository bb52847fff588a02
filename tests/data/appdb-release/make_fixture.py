"""Writes app.sqlite, the app database of the release before conversations kept sources by reference.

Run with the release's code (commit dcb7bc1) on the path, after copying tests/data/index-v1 to
/tmp/rag-index-v1 (where that index was written):

    git worktree add /tmp/release dcb7bc1
    cp -r tests/data/index-v1 /tmp/rag-index-v1
    PYTHONPATH=/tmp/release .venv/bin/python tests/data/appdb-release/make_fixture.py OUT_DIR

Two users' conversations with real answers of the demo model over that index (their sources hold the
passages' text, as that release stored them), an API token for each (tokens.json), a feedback row and the audit rows.
"""

import json
import sys
import time
from pathlib import Path

from rag.qa import build_service
from rag.settings import load_settings
from rag.types import Principal
from ui.appdb import AppDB

out = Path(sys.argv[1])
settings = load_settings(index_dir=Path("/tmp/rag-index-v1/index"), device="cpu",
                         model_cache_dir=Path(sys.argv[2]) if len(sys.argv) > 2 else None)
service = build_service(settings)
db = AppDB(out / "app.sqlite")
admin = Principal(admin=True)  # the index has no permissions: only an admin reads it
tokens = {}
for user, questions in (("ada", ["How many vacation days do employees get?", "Who approves vacation requests?"]),
                        ("hanna", ["What is the hotel limit in London?"])):
    conversation = db.start_conversation(user, questions[0])
    for question in questions:
        answer = service.ask(question, principal=admin)
        db.audit_answer(user, question, question, answer, seconds=1.0)
        db.add_turn(user, conversation, question, question, answer.to_dict())
    tokens[user] = db.create_token(f"{user}-laptop", user, "read", ("everyone",))
db.add_feedback("ada", "How many vacation days do employees get?", "25 days", [], 1, "right", "demo", 1)
(out / "tokens.json").write_text(json.dumps(tokens, indent=1) + "\n")  # test tokens, for the test to sign in
print("written", out / "app.sqlite", time.strftime("%Y-%m-%d"))
