"""CI gate: fail on code that can execute what a file or model contains, or send usage data out.

Flags pickle loading (and its relatives), LangChain's allow_dangerous_deserialization, remote model code
(trust_remote_code=True), torch.load (pickle underneath), and a Streamlit config with usage statistics
on. Scans the files git tracks; exits 1 listing each finding as path:line.

    python scripts/check_safety.py [REPO]
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

RULES = [
    (re.compile(r"\b(c?pickle|dill|cloudpickle|joblib)\.loads?\s*\(|^\s*(import|from)\s+(c?pickle|dill|cloudpickle)\b"),
     "pickle loading runs code from the file"),
    (re.compile(r"allow_dangerous_deserialization"), "LangChain's pickle deserialization"),
    (re.compile(r"""trust_remote_code["']?\s*[=:]\s*True"""), "remote model code"),
    (re.compile(r"\btorch\.load\s*\("), "torch.load unpickles"),
    (re.compile(r"gatherUsageStats\s*[=:]\s*true|gatherUsageStats=true", re.I), "Streamlit usage statistics"),
]
SCANNED = (".py", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".sh", ".ipynb")


def findings(repo: Path) -> list[str]:
    """`path:line: reason` for every rule broken in the tracked files of `repo`."""
    files = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    this = Path(__file__).resolve()
    out = []
    for name in files:
        path = repo / name
        if not name.endswith(SCANNED) or path.resolve() == this or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            for pattern, reason in RULES:
                if pattern.search(line):
                    out.append(f"{name}:{number}: {reason}: {line.strip()[:120]}")
    config = repo / ".streamlit" / "config.toml"
    if not config.is_file():
        out.append(".streamlit/config.toml: missing (usage statistics would be on by default)")
    elif tomllib.loads(config.read_text()).get("browser", {}).get("gatherUsageStats") is not False:
        out.append(".streamlit/config.toml: browser.gatherUsageStats must be false")
    return out


def main() -> int:
    repo = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
    problems = findings(repo)
    for problem in problems:
        print(problem)
    print(f"check_safety: {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
