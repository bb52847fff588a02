"""Sentence splitters on real documentation: rag.sentences against well-kept libraries.

Gold: tests/data/sentences-gold.jsonl, 90 paragraphs (303 sentences) of the Python, Git and Debian
Reference documentation and LaTeX/gnuplot PDF manuals in English, German and French, split by hand.
Reported per language: boundary precision, recall and F1 (a boundary is the character offset where a
sentence starts, after the first), the share of paragraphs split exactly right, and the time per
paragraph. Libraries run when installed (pip install sentencex pysbd syntok); none ships model data to
download at run time.

    .venv/bin/python bench/sentence_segmenters.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOLD = REPO / "tests" / "data" / "sentences-gold.jsonl"


def boundaries(text: str, sentences: list[str]) -> set[int]:
    """Offsets in `text` where the 2nd, 3rd ... sentence starts (sentences found in order)."""
    out, at = set(), 0
    for i, sentence in enumerate(sentences):
        sentence = sentence.strip()
        found = text.find(sentence[:20], at)
        if found < 0:
            continue
        if i:
            out.add(found)
        at = found + max(1, len(sentence) - 5)
    return out


def splitters() -> dict[str, Callable[[str, str], list[str]]]:
    from rag.sentences import split_sentences

    found: dict[str, Callable[[str, str], list[str]]] = {"rag.sentences (ours)": lambda text, lang: split_sentences(text)}
    try:
        import sentencex

        found["sentencex " + getattr(sentencex, "__version__", "")] = lambda text, lang: list(sentencex.segment(lang, text))
    except ImportError:
        pass
    try:
        import pysbd

        segmenters = {lang: pysbd.Segmenter(language=lang, clean=False) for lang in ("en", "de", "fr")}
        found["pysbd 0.3.4"] = lambda text, lang: segmenters[lang].segment(text)
    except ImportError:
        pass
    try:
        import syntok.segmenter as syntok

        def split_syntok(text: str, lang: str) -> list[str]:
            return ["".join(t.spacing + t.value for t in sentence).strip()
                    for paragraph in syntok.process(text) for sentence in paragraph]

        found["syntok 1.4.4"] = split_syntok
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gold = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    report: dict[str, dict[str, dict[str, float]]] = {}
    for name, split in splitters().items():
        per_lang: dict[str, dict[str, float]] = {}
        for lang in ("en", "de", "fr", "all"):
            items = [g for g in gold if lang in ("all", g["lang"])]
            tp = fp = fn = exact = 0
            started = time.perf_counter()
            predicted = [split(g["text"], g["lang"]) for g in items]
            seconds = time.perf_counter() - started
            for g, sentences in zip(items, predicted):
                want = boundaries(g["text"], g["sentences"])
                got = boundaries(g["text"], sentences)
                tp += len(want & got)
                fp += len(got - want)
                fn += len(want - got)
                exact += want == got
            precision = tp / max(1, tp + fp)
            recall = tp / max(1, tp + fn)
            per_lang[lang] = {"paragraphs": len(items), "precision": round(precision, 3), "recall": round(recall, 3),
                              "f1": round(2 * precision * recall / max(1e-9, precision + recall), 3),
                              "exact": round(exact / max(1, len(items)), 3),
                              "us_per_paragraph": round(seconds / max(1, len(items)) * 1e6, 1)}
        report[name] = per_lang
    if args.json:
        print(json.dumps(report))
        return
    print(f"{'splitter':24s} {'lang':4s} {'P':>6s} {'R':>6s} {'F1':>6s} {'exact':>6s} {'us/para':>8s}")
    for name, per_lang in report.items():
        for lang, r in per_lang.items():
            print(f"{name:24s} {lang:4s} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} {r['exact']:6.3f} "
                  f"{r['us_per_paragraph']:8.1f}")


if __name__ == "__main__":
    main()
