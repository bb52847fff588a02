"""Benchmarks (see docs/benchmarks.md); shared helpers."""


def print_figures(figures: dict[str, object], as_json: bool) -> None:
    """A benchmark's figures: one JSON object (`--json`), or a "name: value" line each."""
    import json

    if as_json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
