"""Prompts: Dolly's closed-QA format (as databricks-dolly-15k trained it) or a model's chat template.

The context is packed within the generator's window, counted with its own tokenizer, leaving room for
the answer; passages are numbered [1], [2], ... most relevant first, so the answer can cite them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.types import Hit

# Dolly 2.0's training constants (databricks/dolly, training/consts.py).
INTRO_BLURB = ("Below is an instruction that describes a task. Write a response that appropriately "
               "completes the request.")
INSTRUCTION_KEY = "### Instruction:"
INPUT_KEY = "Input:"
RESPONSE_KEY = "### Response:"
END_KEY = "### End"

# Short on purpose: SmolLM2-135M answered the sample questions with this and drifted with longer guidance.
CITE_HINT = "Cite the passage you used as [1]."
CITE_HINT_MANY = "Cite the passages you used as [1], [2]."


def dolly_prompt(instruction: str, context: str) -> str:
    """Dolly's closed-QA prompt: intro, blank line, instruction, blank line, input, blank line, response key."""
    return (f"{INTRO_BLURB}\n\n{INSTRUCTION_KEY}\n{instruction}\n\n{INPUT_KEY}\n{context}\n\n"
            f"{RESPONSE_KEY}\n")


@dataclass(frozen=True)
class PackedPrompt:
    """The prompt text and the passages it holds (numbered from 1 in this order)."""

    text: str
    passages: tuple[Hit, ...]
    prompt_tokens: int


def passage_text(hit: Hit) -> str:
    """A passage as the model reads it: the heading path it stands under on a first line, then its text."""
    return f"({hit.section})\n{hit.text}" if hit.section else hit.text


def number_passages(passages: Sequence[str], start: int = 1) -> str:
    return "\n\n".join(f"[{i}] {text}" for i, text in enumerate(passages, start=start))


def context_budget(instruction: str, render: Callable[[str, str], str], count_tokens: Callable[[str], int],
                   context_window: int, max_new_tokens: int) -> int:
    """Tokens left for the context once the prompt around it and the answer are counted (8 spare: a
    tokenizer may merge differently at the seams)."""
    return context_window - max_new_tokens - count_tokens(render(instruction, "")) - 8


def pack_prompt(
    question: str,
    hits: Sequence[Hit],
    render: Callable[[str, str], str],
    count_tokens: Callable[[str], int],
    context_window: int,
    max_new_tokens: int,
    truncate: Callable[[str, int], str],
    start: int = 1,
) -> PackedPrompt:
    """Fit as many passages as the window allows (most relevant first) into `render(instruction, context)`.

    The last passage that does not fit whole is cut to the tokens left, if at least 32 are; later ones
    are dropped. `render` is the Dolly format or a chat template; `count_tokens` the generator's tokenizer.
    `start`: the number of the first passage (a prompt of one source keeps that source's number).
    """
    instruction = f"{question}\n\n{CITE_HINT if len(hits) <= 1 else CITE_HINT_MANY}"
    budget = context_budget(instruction, render, count_tokens, context_window, max_new_tokens)
    if budget <= 0:
        raise ValueError(f"the model's window ({context_window} tokens) leaves no room for context after "
                         f"{max_new_tokens} new tokens: lower max_new_tokens")
    texts: list[str] = []
    used: list[Hit] = []
    for hit in hits:
        text = passage_text(hit)
        candidate = number_passages([*texts, text], start)
        if count_tokens(candidate) <= budget:
            texts.append(text)
            used.append(hit)
            continue
        left = budget - count_tokens(number_passages(texts, start)) - count_tokens(f"\n\n[{start + len(texts)}] ")
        if left >= 32:
            texts.append(truncate(text, left))
            used.append(hit)
        break
    text = render(instruction, number_passages(texts, start))
    return PackedPrompt(text=text, passages=tuple(used), prompt_tokens=count_tokens(text))
