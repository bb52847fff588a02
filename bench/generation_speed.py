"""Time to first token and tokens per second of the configured generator (default: SmolLM2-135M).

    .venv/bin/python bench/generation_speed.py [--runs 5] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

from rag.generation import GenerationParams, make_generator
from rag.settings import load_settings

CONTEXT = ("[1] The cafeteria on the second floor of building A is open from 7:30 to 15:00 on working days. "
           "Lunch is served from 11:30 to 14:00 and costs 6.50 EUR with the employee badge. Parking in the "
           "underground garage is free for employees; visitors register at the reception.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    generator = make_generator(load_settings().generation)
    started = time.perf_counter()
    generator.warm_up()
    load_s = time.perf_counter() - started
    prompt = generator.render("Describe the cafeteria and parking rules in detail.", CONTEXT)
    params = GenerationParams(max_new_tokens=args.new_tokens)
    ttft, rate = [], []
    for _ in range(args.runs + 1):
        t0 = time.perf_counter()
        first = None
        text = ""
        for piece in generator.stream(prompt, params):
            if first is None and piece:
                first = time.perf_counter() - t0
            text += piece
        total = time.perf_counter() - t0
        tokens = generator.count_tokens(text)
        ttft.append(first or total)
        rate.append(tokens / max(total - (first or 0), 1e-9))
    ttft, rate = ttft[1:], rate[1:]  # the first run warms caches
    print(f"{generator.model_id} on {generator.device}: load {load_s:.1f} s, prompt {generator.count_tokens(prompt)} tokens, "
          f"time to first token p50 {statistics.median(ttft) * 1000:.0f} ms, {statistics.median(rate):.1f} tokens/s")


if __name__ == "__main__":
    main()
