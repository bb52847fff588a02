"""How fast `rag ingest URL` crawls an intranet site, and what a re-crawl with nothing changed costs.

A generated 500-page wiki (tests/sitegen.py: a start page, a category page per 50 pages, each page linking to
its category and the next three; real
HTTP/1.1 with keep-alive on loopback, ETag and Last-Modified on every page) is crawled by the web source's
scan alone (requests, link extraction, spooling; no parse, no embedding), against the baseline of the same
pages fetched by a plain httpx client in a loop (the server's own speed: the floor for a one-connection
crawl), alternating, 3 rounds. Then one whole `rag ingest URL` (parsing and embedding reported
separately), and a re-run with nothing changed: its requests, how many were conditional, chunks embedded.

    python bench/crawl.py [--pages 500] [--rounds 3] [--json]

Target (issue 30): at least 20 pages/s crawled; a re-crawl sends only conditional requests and embeds nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import print_figures  # noqa: E402 - after the path is set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import httpx

    from ingest.job import run_ingest
    from ingest.walk import FoundFile
    from ingest.web import Site as WebSite, WebSource
    from rag.settings import load_settings
    from tests.sitegen import Site, serve, wiki

    site = Site(pages=wiki(args.pages))
    out: dict[str, object] = {"pages": args.pages}
    with serve(site), tempfile.TemporaryDirectory() as tmp:
        start = site.url("/wiki/")
        urls = [site.url(p) for p in site.pages]
        crawl_s, plain_s = [], []
        for _ in range(args.rounds):
            source = WebSource(WebSite(start, requests_per_s=0), 20 * 2**20)
            t = time.perf_counter()
            items = [i for i in source.scan({}) if isinstance(i, FoundFile)]
            crawl_s.append(time.perf_counter() - t)
            source.close()
            assert len(items) == len(site.pages), len(items)
            with httpx.Client(trust_env=False) as client:
                t = time.perf_counter()
                for url in urls:
                    client.get(url).raise_for_status()
                plain_s.append(time.perf_counter() - t)
        out["crawl_pages_per_s"] = round(len(site.pages) / statistics.median(crawl_s), 1)
        out["plain_httpx_pages_per_s"] = round(len(urls) / statistics.median(plain_s), 1)
        out["crawl_vs_plain"] = round(statistics.median(plain_s) / statistics.median(crawl_s), 2)
        out["crawl_s"] = [round(s, 3) for s in crawl_s]

        sources = Path(tmp) / "sources.toml"
        sources.write_text(f'[[site]]\nurl = "{start}"\ngroups = ["staff"]\nrequests_per_s = 0\n')
        settings = load_settings(index_dir=Path(tmp) / "index", device="cpu", sources_file=sources)
        first = run_ingest(settings, [start], progress=False)
        out["ingest_s"] = round(first.seconds, 1)
        out["ingest_pages_per_s"] = round(first.files_indexed / first.seconds, 1)
        out["chunks"] = first.chunks_added
        site.clear_log()
        again = run_ingest(settings, [start], progress=False)
        pages = [r for r in site.requests() if r.path not in ("/robots.txt", "/sitemap.xml")]
        out["recrawl_s"] = round(again.seconds, 2)
        out["recrawl_requests"] = len(site.requests())
        out["recrawl_page_requests_conditional"] = sum(r.conditional for r in pages)
        out["recrawl_304"] = sum(r.status == 304 for r in pages)
        out["recrawl_chunks_embedded"] = again.chunks_embedded
        out["recrawl_files_indexed"] = again.files_indexed
    print_figures(out, args.json)


if __name__ == "__main__":
    main()
